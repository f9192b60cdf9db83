"""The nightly "abandoned cart" job: remind customers of their basket, if they allow it.

For each stored customer the job asks the vault, never its own records:

1. ``reachable()`` for (phone, abandoned_cart) over the whole list in one
   batch call. It screens out people nobody may reach any more (revoked,
   erased, unknown) without one question each.
2. ``may_contact()`` for (phone, abandoned_cart): the decision id to report
   and the number to call (``reach``).
3. If phone is not allowed, the decision's ``alternatives`` say whether
   e-mail is allowed for the same purpose right now; then ``may_contact()``
   for (email, abandoned_cart) gives that decision's id and address.

It "contacts" by printing what it would send (an example never calls or
mails anyone), reports each contact with its ``decision_id`` so the vault can
show the person what was done on which grounds, and prints a summary.

Run it with ``examples/shop/run abandoned-cart`` (README.md).
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from dataclasses import dataclass, field

from prefvault_sdk import Channel, Decision, Purpose, Reason, VaultClient, VaultError
from shop_config import MissingConfig, ShopConfig
from shop_store import CustomerStore

PURPOSE = Purpose.ABANDONED_CART
#: the preferred channel first; the rest are fallbacks, used only if the vault lists them
CHANNELS = (Channel.PHONE, Channel.EMAIL)
#: answers after which no channel will do, so there is nothing more to ask
FINAL = frozenset({Reason.REVOKED, Reason.ERASED, Reason.UNKNOWN_SUBJECT,
                   Reason.VAULT_UNREACHABLE})
#: the basket an example shop pretends each customer left behind
CART = "Gazelle Ultimate C380 (EUR 2.899,00) en een Abus-slot (EUR 79,95)"

Say = Callable[[str], None]


@dataclass(frozen=True)
class Contacted:
    """A reminder the job (pretended to have) sent and reported to the vault."""

    subject: str
    channel: str
    decision_id: str
    contact_id: str


@dataclass(frozen=True)
class Skipped:
    """A customer the job left alone, and why (the vault's reason, per channel asked)."""

    subject: str
    reason: str


@dataclass
class Summary:
    """What one run did: who was reminded and who was not."""

    contacted: list[Contacted] = field(default_factory=list)
    skipped: list[Skipped] = field(default_factory=list)

    def lines(self) -> list[str]:
        """The report printed at the end of a run."""
        by_channel = {c: sum(1 for x in self.contacted if x.channel == c) for c in CHANNELS}
        out = [f"contacted {len(self.contacted)} ("
               + ", ".join(f"{c} {n}" for c, n in by_channel.items()) + f"), "
               f"skipped {len(self.skipped)}"]
        out += [f"  skipped {s.subject}: {s.reason}" for s in self.skipped]
        return out


def _message(channel: str, reach: str) -> str:
    if channel == Channel.PHONE:
        return (f"would CALL {reach}: 'Goedemiddag, u heeft nog iets in uw winkelmandje "
                f"bij Fietsen & Co: {CART}.'")
    return (f"would MAIL {reach}: subject 'Uw winkelmandje wacht op u' - {CART}; "
            "https://fietsen.example/mandje")


def _decide(vault: VaultClient, subject: str) -> tuple[Decision | None, str]:
    """The first channel (in ``CHANNELS`` order) the vault allows and shares an address for.

    Returns ``(decision, "")``, or ``(None, why)`` listing each channel's answer.
    """
    why: list[str] = []
    decision = vault.may_contact(subject, CHANNELS[0], PURPOSE)
    for channel in CHANNELS:
        if channel != CHANNELS[0]:
            if channel not in decision.alternatives:
                continue
            # The alternative is allowed; ask for it so the report has its own decision id.
            decision = vault.may_contact(subject, channel, PURPOSE)
        if decision and decision.reach and decision.decision_id:
            return decision, ""
        why.append(f"{channel}: {decision.reason if not decision else 'no address shared'}")
    if not why[1:]:
        why.append("no other channel allowed")
    return None, "; ".join(why)


def run(vault: VaultClient, store: CustomerStore, say: Say = print) -> Summary:
    """Remind every active customer the vault lets us reach; report and summarise."""
    summary = Summary()
    subjects = [c.subject for c in store.customers(status="active")]
    screened = vault.reachable(subjects, CHANNELS[0], PURPOSE)
    for first in screened:
        subject = first.subject
        if not first and first.reason in FINAL:
            summary.skipped.append(Skipped(subject, f"{first.reason}"))
            if first.reason in (Reason.REVOKED, Reason.ERASED):
                store.mark_revoked(subject)  # a webhook we missed: stop asking next night
            continue
        decision, why = _decide(vault, subject)
        if decision is None or decision.reach is None or decision.decision_id is None:
            summary.skipped.append(Skipped(subject, why))
            continue
        say(f"{subject}: {_message(decision.channel, decision.reach)}")
        receipt = vault.report_contact(subject, decision.channel, PURPOSE,
                                       decision_id=decision.decision_id)
        summary.contacted.append(Contacted(subject, decision.channel, decision.decision_id,
                                           receipt.contact_id))
    for line in summary.lines():
        say(line)
    return summary


def main() -> int:
    """``python abandoned_cart.py``: one run against the configured vault; the exit status."""
    try:
        config = ShopConfig.from_env()
    except MissingConfig as error:
        print(str(error).replace("cannot start", "cannot run the abandoned-cart job"),
              file=sys.stderr)
        return 2
    with VaultClient(config.vault_url, client_id=config.client_id,
                     client_secret=config.client_secret) as vault:
        try:
            run(vault, CustomerStore(config.database_path))
        except VaultError as error:
            print(f"abandoned-cart job stopped: {error}", file=sys.stderr)
            return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
