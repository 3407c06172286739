import { Problem, login } from "../api";
import { field, h, mount } from "../dom";

export function loginPage(root: HTMLElement, opts: { notice: string | null; done: () => void }): void {
  const user = h("input", { name: "username", autocomplete: "username", required: true, autofocus: true });
  const pass = h("input", { name: "password", type: "password", autocomplete: "current-password", required: true });
  const error = h("p", { class: "error", role: "alert", "data-testid": "login-error" });
  const submit = h("button", { type: "submit", class: "primary" }, "Sign in");
  const form = h(
    "form",
    {
      class: "login card",
      on: {
        submit: async (e: SubmitEvent) => {
          e.preventDefault();
          submit.disabled = true;
          error.textContent = "";
          try {
            await login(user.value.trim(), pass.value);
            opts.done();
          } catch (err) {
            error.textContent = err instanceof Problem ? err.describe() : "Cannot reach the server.";
            submit.disabled = false;
            pass.select();
          }
        },
      },
    },
    h("h1", null, "quantbox"),
    opts.notice ? h("p", { class: "notice", "data-testid": "session-notice" }, opts.notice) : null,
    field("Username", user),
    field("Password", pass),
    error,
    submit,
    h("small", { class: "muted" }, "The first admin password is in data/initial-admin-password (or /var/lib/quantbox on a .deb install)."),
  );
  mount(root, h("div", { class: "login-wrap" }, form));
}
