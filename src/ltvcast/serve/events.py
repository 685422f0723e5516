"""The events the service accepts (``POST /v1/events``), validated with pydantic.

Four types, told apart by ``type``; every event has an ``id`` (unique: a
repeat of an event with the same canonical JSON, :func:`event_json`, is
acknowledged as a duplicate and not applied again; an id reused with
another payload is refused, HTTP 409):

=============  ==============================================================
type           fields (bold: required)
=============  ==============================================================
``order``      **id**, **order_id**, **customer_id**, **timestamp**, amount
               (the order total, used while the order has no lines),
               currency, channel
``order_line`` **id**, **order_id**, **line**, amount (line value after
               discount) or **quantity** + **unit_price** (amount =
               round(quantity × unit_price, 4) − discount), discount,
               product_id, category, brand
``return``     **id**, **customer_id**, **timestamp**, **amount** (money
               given back, > 0), return_id (default: the event id),
               order_id, line, quantity, product_id
``browse``     **id**, **customer_id**, **timestamp**, **event_type**
               (any type, as in the ingest: stored lower-case with ``_`` for
               spaces/dashes, ``Email-Open`` -> ``email_open``; empty is
               refused; ``session_start``, ``view``, ``add_to_cart``,
               ``purchase`` get their own features, others generic ones),
               session_id, product_id
=============  ==============================================================

Amounts are in the shop currency (a ``currency`` other than the shop's is
refused), with at most 4 decimals (more is refused, HTTP 422, rather than
rounded) and kept exact as integers of 1/10,000 (``*_e4``). Timestamps are ISO 8601; one without a zone is UTC (as in the
ingest). An order line has no time of its own: its order's timestamp
decides its day, and a line that arrives before its order waits for it.
These are the rows ``ltvcast sync`` writes to the store's ``orders``,
``order_items``, ``returns`` and ``events`` tables.
"""

from __future__ import annotations

import hashlib
from datetime import date, datetime, timezone
from decimal import ROUND_HALF_UP, Decimal
from functools import lru_cache
from typing import Annotated, Literal, Union
from zoneinfo import ZoneInfo

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    TypeAdapter,
    ValidationInfo,
    field_validator,
    model_validator,
)

from ltvcast.ingest.kinds import event_type_name

MAX_BATCH = 1000
_EPOCH = date(1970, 1, 1).toordinal()
_E4 = Decimal("0.0001")
# The store quarantines placeholder timestamps (before 1900, from 2200); so does the API.
_FIRST_YEAR, _END_YEAR = 1900, 2200

Id = Annotated[str, Field(min_length=1, max_length=256)]
Text = Annotated[str, Field(max_length=256)]


def _four_places(value: Decimal, info: ValidationInfo) -> Decimal:
    """Refuse an amount with a non-zero digit beyond the 4th decimal (``1.23456``; ``1.23450`` is fine).

    Events already in a log (validation context ``{"logged": True}``, :func:`parse_event`) are not
    checked again: a log written before this rule replays as it was acknowledged.

    Raises:
        ValueError: more than 4 decimals (pydantic reports it as a validation error, HTTP 422).
    """
    if info.context and info.context.get("logged"):
        return value
    if value != value.quantize(_E4, rounding=ROUND_HALF_UP):
        raise ValueError(f"{value} has more than 4 decimals; amounts are kept to 1/10,000 of the currency unit")
    return value


Money = Annotated[Decimal, Field(ge=0, lt=Decimal("1e13"), allow_inf_nan=False), AfterValidator(_four_places)]


def to_e4(value: Decimal) -> int:
    """Money -> integer count of 1/10,000 currency units (half away from zero, as DuckDB's DECIMAL cast)."""
    return int((value / _E4).quantize(Decimal(1), rounding=ROUND_HALF_UP))


def from_e4(value: int) -> str:
    """Integer 1/10,000 units -> exact decimal text with 4 places (``12.5`` -> ``"12.5000"``)."""
    return str((Decimal(value) * _E4).quantize(_E4))


@lru_cache(maxsize=64)
def _zone(name: str) -> ZoneInfo:
    return ZoneInfo(name)


def local_day(ts: datetime, tz: str) -> int:
    """Days since 1970-01-01 of the calendar day ``ts`` falls on in zone ``tz`` (the shop's)."""
    return ts.astimezone(_zone(tz)).date().toordinal() - _EPOCH


def day_index(day: date) -> int:
    """Days since 1970-01-01 of ``day``."""
    return day.toordinal() - _EPOCH


def index_day(index: int) -> date:
    """The date ``index`` days after 1970-01-01."""
    return date.fromordinal(int(index) + _EPOCH)


class _Event(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    id: Id


class _Timed(_Event):
    timestamp: datetime

    @field_validator("timestamp")
    @classmethod
    def _utc(cls, value: datetime) -> datetime:
        value = value.replace(tzinfo=timezone.utc) if value.tzinfo is None else value.astimezone(timezone.utc)
        if not _FIRST_YEAR <= value.year < _END_YEAR:
            raise ValueError(f"timestamp must be between {_FIRST_YEAR} and {_END_YEAR - 1} (a placeholder date?)")
        return value


class OrderEvent(_Timed):
    """An order (header): it makes its local day a purchase occasion."""

    type: Literal["order"]
    order_id: Id
    customer_id: Id
    amount: Money | None = None
    currency: Annotated[str, Field(pattern=r"^[A-Za-z]{3}$")] | None = None
    channel: Text | None = None

    @property
    def stated_e4(self) -> int | None:
        """The stated order total in 1/10,000 units, or None."""
        return None if self.amount is None else to_e4(self.amount)


class OrderLineEvent(_Event):
    """One line of an order; its day and customer are the order's."""

    type: Literal["order_line"]
    order_id: Id
    line: Annotated[int, Field(ge=0, lt=2**62)]
    amount: Money | None = None
    quantity: Annotated[float, Field(allow_inf_nan=False, ge=0)] | None = None
    unit_price: Money | None = None
    discount: Money | None = None
    product_id: Text | None = None
    category: Text | None = None
    brand: Text | None = None

    @model_validator(mode="after")
    def _has_value(self) -> OrderLineEvent:
        if self.amount is None and (self.quantity is None or self.unit_price is None):
            raise ValueError("give amount, or quantity and unit_price")
        if self.amount_e4 < 0:
            raise ValueError("discount exceeds quantity x unit_price")
        return self

    @property
    def amount_e4(self) -> int:
        """Line value after discount in 1/10,000 units (the store's rule for order_items.amount)."""
        if self.amount is not None:
            return to_e4(self.amount)
        q = Decimal(repr(float(self.quantity))).quantize(_E4, rounding=ROUND_HALF_UP)
        price = self.unit_price.quantize(_E4, rounding=ROUND_HALF_UP)
        return to_e4(q * price) - (to_e4(self.discount) if self.discount is not None else 0)


class ReturnEvent(_Timed):
    """Money given back; it lowers the net spend of its own local day."""

    type: Literal["return"]
    customer_id: Id
    amount: Annotated[Decimal, Field(gt=0, lt=Decimal("1e13"), allow_inf_nan=False), AfterValidator(_four_places)]
    return_id: Id | None = None
    order_id: Id | None = None
    line: Annotated[int, Field(ge=0, lt=2**62)] | None = None
    quantity: Annotated[float, Field(allow_inf_nan=False, ge=0)] | None = None
    product_id: Text | None = None


class BrowseEvent(_Timed):
    """A browsing event (logged and synced; it does not change the RFM state)."""

    type: Literal["browse"]
    customer_id: Id
    event_type: Annotated[Text, AfterValidator(event_type_name)]
    session_id: Text | None = None
    product_id: Text | None = None


Event = Annotated[Union[OrderEvent, OrderLineEvent, ReturnEvent, BrowseEvent], Field(discriminator="type")]
EVENT_ADAPTER: TypeAdapter[Event] = TypeAdapter(Event)


class EventBatch(BaseModel):
    """The body of ``POST /v1/events``: 1 to :data:`MAX_BATCH` events."""

    model_config = ConfigDict(extra="forbid")

    events: Annotated[list[Event], Field(min_length=1, max_length=MAX_BATCH)]


def event_json(event: Event) -> str:
    """The canonical JSON of a validated event (what the log stores; Decimals as text)."""
    return event.model_dump_json(exclude_none=True)


def body_digest(body: str) -> str:
    """SHA-256 (hex) of a logged event's canonical JSON: what a reused event id is compared by."""
    return hashlib.sha256(body.encode("utf-8")).hexdigest()


def event_digest(event: Event) -> str:
    """:func:`body_digest` of ``event``'s canonical JSON (:func:`event_json`)."""
    return body_digest(event_json(event))


def parse_event(text: str | bytes) -> Event:
    """Parse a logged event's JSON (inverse of :func:`event_json`).

    Raises:
        pydantic.ValidationError: not a valid event.
    """
    return EVENT_ADAPTER.validate_json(text, context={"logged": True})
