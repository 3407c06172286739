// Users and API keys (admin).
import { api, me, type Page as PageOf, type User } from "../api";
import { badge, card, confirmDialog, field, form, h, inlineEdit, mount, showError as err, table, toast } from "../dom";
import { ago, time } from "../format";
import type { Page } from "../page";

interface ApiKey {
  id: string;
  name: string;
  prefix: string;
  role: string;
  owner: string;
  created_at: string;
  last_used_at: string | null;
  revoked_at: string | null;
}

const ROLES = ["viewer", "trader", "admin"];

export const usersPage: Page = async (root) => {
  const users = h("div");
  const keys = h("div");
  const newKey = h("div", { "aria-live": "polite" });

  const patch = async (u: User, body: Record<string, unknown>) => {
    try {
      await api(`/api/v1/users/${encodeURIComponent(u.username)}`, { method: "PATCH", body });
      toast(`Updated ${u.username}`, "ok");
    } catch (e) {
      err(e);
    }
    await load();
  };

  const load = async () => {
    const [us, ks] = await Promise.all([api<PageOf<User>>("/api/v1/users?page_size=100"), api<PageOf<ApiKey>>("/api/v1/api-keys?all=true&page_size=100")]);
    mount(
      users,
      table(
        [
          { title: "User", value: (u: User) => u.username, sort: (u) => u.username },
          {
            title: "Role",
            value: (u: User) => {
              const sel = h("select", { "aria-label": `Role of ${u.username}`, disabled: u.id === me?.id }, ROLES.map((r) => h("option", { value: r, selected: r === u.role }, r)));
              sel.addEventListener("change", () => void patch(u, { role: sel.value }));
              return sel;
            },
            sort: (u) => u.role,
          },
          { title: "State", value: (u: User) => badge(u.disabled ? "disabled" : "active") },
          { title: "Created", value: (u: User) => time(u.created_at), sort: (u) => u.created_at },
          {
            title: "",
            value: (u: User) =>
              u.id === me?.id
                ? h("span", { class: "muted" }, "you")
                : h(
                    "div",
                    { class: "row actions" },
                    h("button", { class: "ghost small", on: { click: () => void patch(u, { disabled: !u.disabled }) } }, u.disabled ? "Enable" : "Disable"),
                    inlineEdit("Set password", { type: "password", placeholder: "at least 12 characters" }, async (password) => {
                      await api(`/api/v1/users/${encodeURIComponent(u.username)}`, { method: "PATCH", body: { password } });
                      toast(`New password set for ${u.username}`, "ok");
                    }),
                    h(
                      "button",
                      {
                        class: "ghost small",
                        on: {
                          click: async () => {
                            if (!(await confirmDialog("Delete user", `Delete ${u.username}? Their API keys stop working.`, "Delete"))) return;
                            await api(`/api/v1/users/${encodeURIComponent(u.username)}`, { method: "DELETE" }).catch(err);
                            await load();
                          },
                        },
                      },
                      "Delete",
                    ),
                  ),
          },
        ],
        us.items,
        { testid: "users" },
      ),
    );
    mount(
      keys,
      table(
        [
          { title: "Key", value: (k: ApiKey) => [h("strong", null, k.name), h("div", { class: "muted small" }, h("code", null, `${k.prefix}…`))], sort: (k) => k.name },
          { title: "Owner", value: (k: ApiKey) => k.owner, sort: (k) => k.owner },
          { title: "Role", value: (k: ApiKey) => k.role },
          { title: "Last used", value: (k: ApiKey) => ago(k.last_used_at) },
          { title: "State", value: (k: ApiKey) => badge(k.revoked_at ? "revoked" : "active") },
          {
            title: "",
            value: (k: ApiKey) =>
              k.revoked_at
                ? null
                : h(
                    "button",
                    {
                      class: "ghost small",
                      on: {
                        click: async () => {
                          if (!(await confirmDialog("Revoke key", `Revoke ${k.name}? Clients using it are refused at once.`, "Revoke"))) return;
                          await api(`/api/v1/api-keys/${k.id}`, { method: "DELETE" }).catch(err);
                          await load();
                        },
                      },
                    },
                    "Revoke",
                  ),
          },
        ],
        ks.items,
        { testid: "keys", empty: "No API keys." },
      ),
    );
  };

  const uname = h("input", { required: true, autocomplete: "off" });
  const upass = h("input", { type: "password", required: true, minlength: 12, autocomplete: "new-password" });
  const urole = h("select", null, ROLES.map((r) => h("option", { value: r, selected: r === "trader" }, r)));
  const userForm = form(
    { class: "row wrap" },
    async () => {
      await api("/api/v1/users", { method: "POST", body: { username: uname.value, password: upass.value, role: urole.value } });
      toast(`Created ${uname.value}`, "ok");
      uname.value = upass.value = "";
      await load();
    },
    field("Username", uname),
    field("Password", upass),
    field("Role", urole),
    h("button", { type: "submit", class: "primary" }, "Add user"),
  );

  const kname = h("input", { required: true, placeholder: "grafana" });
  const krole = h("select", null, ROLES.map((r) => h("option", { value: r }, r)));
  const keyForm = form(
    { class: "row wrap" },
    async () => {
      const k = await api<{ key: string; api_key: ApiKey }>("/api/v1/api-keys", { method: "POST", body: { name: kname.value, role: krole.value } });
      mount(newKey, h("div", { class: "notice" }, "Copy this key now; it is not shown again: ", h("code", { "data-testid": "new-key" }, k.key)));
      await load();
    },
    field("Name", kname),
    field("Role", krole),
    h("button", { type: "submit", class: "primary" }, "Create key"),
  );

  mount(root, h("h1", null, "Users & API keys"), card("Users", users, h("h3", null, "Add a user"), userForm), card("API keys", keys, h("h3", null, "New key (yours)"), keyForm, newKey));
  await load();
};
