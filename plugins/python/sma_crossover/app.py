"""SMA crossover in Python, long only: the same rules as
plugins/sma-crossover (Rust), so both produce the same orders on the same
bars. Averages are exact (each close read as the Rust SDK reads prices;
sums as Fractions), and a
crossing is counted as the SDK's Crossing counts it: the difference turns
strictly positive (negative) after a last non-zero difference of the other
sign; ties are not crossings.

Built with componentize-py against plugin-sdk/wit (world `strategy`),
WASI stubbed out: see build.sh.
"""

import struct
from collections import deque
from fractions import Fraction

import wit_world
from componentize_py_types import Err
from wit_world.imports import host
from wit_world.imports.types import (
    Info,
    LogLevel,
    Order,
    OrderType_Market,
    ParamSpec,
    ParamType,
    Side,
)

PARAMS = [
    ParamSpec("fast", ParamType.INTEGER, 10.0, 1.0, 500.0, "fast SMA period (bars)"),
    ParamSpec("slow", ParamType.INTEGER, 30.0, 2.0, 2000.0, "slow SMA period (bars)"),
    ParamSpec("size", ParamType.FLOAT, 1.0, 0.0, None, "quantity per entry"),
]


def resolve(given):
    """Parameter values by name: the SDK's rules (unknown names, ranges, integers)."""
    known = {s.name for s in PARAMS}
    for g in given:
        if g.name not in known:
            raise Err(f'unknown parameter "{g.name}"')
    values = {}
    for s in PARAMS:
        v = next((g.value for g in given if g.name == s.name), s.default)
        if v != v or v in (float("inf"), float("-inf")):
            raise Err(f"{s.name}: {v} is not a finite number")
        if (s.min is not None and v < s.min) or (s.max is not None and v > s.max):
            raise Err(f"{s.name}: {v} is outside [{s.min}, {s.max}]")
        if s.type == ParamType.INTEGER and v != int(v):
            raise Err(f"{s.name}: {v} is not an integer")
        values[s.name] = v
    return values


def exact(x):
    """x as the SDK reads it (quantbox_sdk indicators, module exact): the
    shortest decimal with at most 18 places that maps back to x, found with
    the same float steps, else the nearest multiple of 1e-18."""
    for k in range(19):
        p = float(10**k)
        scaled = x * p
        if abs(scaled) >= 2.0**53:
            break
        y = float(round(scaled))
        if y / p == x:
            return Fraction(int(y), 10**k)
    return Fraction(round(Fraction(x) * 10**18), 10**18)


class Sma:
    """Exact SMA: the window's sum as a Fraction of the closes' decimals."""

    def __init__(self, n):
        self.n = n
        self.window = deque()
        self.sum = Fraction(0)

    def update(self, x):
        x = exact(x)
        self.window.append(x)
        self.sum += x
        if len(self.window) > self.n:
            self.sum -= self.window.popleft()
        return self.sum / self.n if len(self.window) == self.n else None


class WitWorld(wit_world.WitWorld):
    def describe(self):
        return Info(
            "sma-crossover-py",
            "0.1.0",
            "Long-only SMA crossover (Python): buy when the fast SMA crosses above the slow one, exit when it crosses below",
            PARAMS,
            1,
            ["1m"],
        )

    def init(self, params, state):
        p = resolve(params)
        fast, slow = int(p["fast"]), int(p["slow"])
        if fast >= slow:
            raise Err(f"fast ({fast}) must be shorter than slow ({slow})")
        if p["size"] <= 0.0:
            raise Err("size must be positive")
        global STRATEGY
        STRATEGY = Crossover(fast, slow, p["size"])
        if state:
            for (close,) in struct.iter_unpack("<d", state):
                STRATEGY.step(close)

    def on_bars(self, now, bars):
        s = STRATEGY
        symbol = bars.symbol
        for ts, close in zip(bars.ts, bars.close):
            cross = s.step(close)
            if cross is None:
                continue
            held = host.get_position(symbol).quantity
            if cross > 0 and held == 0.0:
                side, quantity = Side.BUY, s.size
            elif cross < 0 and held > 0.0:
                side, quantity = Side.SELL, held
            else:
                continue
            s.orders += 1
            try:
                host.submit_order(Order(f"sma-{s.orders}", symbol, side, quantity, OrderType_Market(), ts))
            except Err as e:
                host.log(LogLevel.WARN, f"order refused: {e.value}")

    def on_ticks(self, now, ticks):
        pass

    def on_order(self, now, event):
        pass

    def on_timer(self, now):
        pass

    def snapshot_state(self):
        h = STRATEGY.history
        return struct.pack(f"<{len(h)}d", *h)


class Crossover:
    def __init__(self, fast, slow, size):
        self.fast = Sma(fast)
        self.slow = Sma(slow)
        self.size = size
        # Sign of the last non-zero difference fast - slow.
        self.last = 0
        self.orders = 0
        self.history = deque(maxlen=slow)

    def step(self, close):
        """Feeds one close; +1 for a cross up, -1 down, None otherwise."""
        self.history.append(close)
        f = self.fast.update(close)
        s = self.slow.update(close)
        if f is None or s is None or f == s:
            return None
        sign = 1 if f > s else -1
        cross = sign if self.last == -sign else None
        self.last = sign
        return cross


STRATEGY = None
