"""The customer base as arrays a day's usage is drawn from: ids, seats, how much and when each
customer uses the service, and when it may use the restricted functions."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from tasks.synthetic.model import Model


def customer_ids(n: int) -> list[str]:
    """c00001, c00002, ...: wide enough for the unknown customers bad lines name after them."""
    width = max(5, len(str(n + 1000)))
    return [f"c{c + 1:0{width}d}" for c in range(n)]


def _empty() -> np.ndarray:
    return np.zeros(0)


@dataclass
class Customers:
    """Per customer: seats, relative use, the instants it starts and stops using the service,
    whether it uses more accounts than it has seats, and the editions it holds; after
    `entitle`, its class of function mix and its windows of each restricted function."""

    ids: list[str]
    seats: np.ndarray
    weight: np.ndarray
    active_from: np.ndarray
    active_until: np.ndarray
    over: np.ndarray
    held: list[dict] = field(default_factory=list)  # edition -> (first start, last end)
    cls: np.ndarray = field(default_factory=_empty)
    cums: list[np.ndarray] = field(default_factory=list)  # per class; the last: no entitlement
    mcpe: np.ndarray = field(default_factory=_empty)  # mean credits per event, per class
    win: np.ndarray = field(default_factory=_empty)  # [customer, restricted function, from/until]

    @property
    def n(self) -> int:
        return len(self.ids)

    @classmethod
    def new(cls, n: int, over: np.ndarray | None = None) -> Customers:
        """n customers active all along, no seats or use yet, holding nothing."""
        z = np.zeros(n)
        over = np.zeros(n, dtype=bool) if over is None else over
        held: list[dict] = [{} for _ in range(n)]
        return cls(customer_ids(n), z, z.copy(), z.copy(), np.full(n, np.inf), over, held)

    def entitle(self, model: Model) -> None:
        """Classes by the restricted functions the held editions entitle to, each class's mix,
        and the window (first start, last end) each restricted function is open to each."""
        restricted = [set(model.fns[r]["editions"]) for r in model.restricted]
        ent = [tuple(bool(set(h) & r) for r in restricted) for h in self.held]
        classes = sorted(set(ent))
        self.cls = np.array([classes.index(k) for k in ent], dtype=np.int16)
        self.cums = [model.cum(k) for k in classes] + [model.cum((False,) * len(restricted))]
        self.mcpe = np.array([model.mean_per_event(cum) for cum in self.cums])
        self.win = np.zeros((self.n, len(restricted), 2))
        for c, h in enumerate(self.held):
            for j, r in enumerate(restricted):
                if spans := [h[e] for e in r if e in h]:
                    self.win[c, j] = (min(s[0] for s in spans), max(s[1] for s in spans))
