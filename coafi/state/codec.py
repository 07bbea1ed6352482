"""How values are written to and read from state items: times, numbers, JSON payloads and their S3 offload.

JSON payloads (inputs, outputs, errors, variables, snapshots) are stored as JSON text so numbers and nesting
survive exactly. When the payloads of one item would not fit DynamoDB's 400 KB item limit, the largest are put
in the payload bucket and the attribute holds a pointer instead (a map ``{s3Bucket, s3Key, bytes, sha256}``);
reads follow pointers transparently.
"""

from __future__ import annotations

import hashlib
import json
import secrets
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import quote

from coafi.state.errors import PayloadTooLarge, PayloadUnavailable

#: Payload bytes one item may hold inline; the rest of the item (keys, times, names) stays far below the
#: 400 KB limit's remaining 50 KB.
MAX_INLINE_BYTES = 350_000
#: Every payload object lives under this prefix of the payload bucket (what the functions' grant covers).
OBJECT_ROOT = "executions/"
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)

Attr = dict[str, Any]


# -- times -----------------------------------------------------------------------------------------
def parse_time(value: str | datetime | None) -> datetime | None:
    """An aware UTC datetime from an ISO text (``Z``, an offset, or none meaning UTC) or a datetime."""
    if value is None or value == "":
        return None
    moment = value if isinstance(value, datetime) else datetime.fromisoformat(value.replace("Z", "+00:00"))
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def format_time(value: str | datetime) -> str:
    """``YYYY-MM-DDTHH:MM:SS.mmmZ``: one format for every stored time, so text order is time order."""
    moment = parse_time(value)
    assert moment is not None
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def now_iso() -> str:
    return format_time(datetime.now(UTC))


_clock_lock = threading.Lock()
_last_event_us = 0


def event_time() -> datetime:
    """Now, to the microsecond, strictly increasing within this process: two events one writer records in
    sequence (a step's start and end) never share a timestamp, so history order is write order."""
    global _last_event_us
    with _clock_lock:
        now_us = time.time_ns() // 1000
        _last_event_us = max(now_us, _last_event_us + 1)
        return _EPOCH + timedelta(microseconds=_last_event_us)


def event_id(moment: datetime) -> str:
    """``<UTC time, µs>#<8 hex>``: sorts by time; the random part keeps concurrent writers apart."""
    stamp = moment.astimezone(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")
    return f"{stamp}#{secrets.token_hex(4)}"


def epoch_seconds(moment: datetime) -> int:
    return int(moment.timestamp())


# -- attribute values ------------------------------------------------------------------------------
def s(value: str) -> Attr:
    return {"S": value}


def n(value: int) -> Attr:
    return {"N": str(value)}


def plain(item: Mapping[str, Attr]) -> dict[str, Any]:
    """Strings, numbers and booleans of an item as Python values (maps, i.e. payload pointers, left out)."""
    out: dict[str, Any] = {}
    for key, value in item.items():
        if "S" in value:
            out[key] = value["S"]
        elif "N" in value:
            out[key] = int(value["N"]) if value["N"].lstrip("-").isdigit() else float(value["N"])
        elif "BOOL" in value:
            out[key] = value["BOOL"]
    return out


def dumps(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), default=str, ensure_ascii=False)


def payload_size(attr: Attr) -> int:
    return len(attr["S"].encode()) if "S" in attr else 0


# -- payloads --------------------------------------------------------------------------------------
class Payloads:
    """JSON payload attributes of items, offloaded to S3 when an item would be too large."""

    def __init__(self, bucket: str | None, s3_client: Callable[[], Any], *,
                 inline_limit: int = MAX_INLINE_BYTES) -> None:
        self.bucket = bucket or None
        self.inline_limit = inline_limit
        self._s3 = s3_client
        self._cache: OrderedDict[str, Any] = OrderedDict()  # S3 key -> value; objects are never rewritten
        self._cache_lock = threading.Lock()

    def fit(self, execution_id: str, item: dict[str, Attr], names: list[str]) -> list[str]:
        """Offload the largest inline payload attributes among ``names`` until the item's payloads fit;
        returns the attributes that were offloaded (their values in ``item`` are now pointers)."""
        moved: list[str] = []
        total = sum(payload_size(v) for v in item.values())
        candidates = sorted((a for a in names if a in item and "S" in item[a]), key=lambda a: -payload_size(item[a]))
        for name in candidates:
            if total <= self.inline_limit:
                break
            size = payload_size(item[name])
            item[name] = self.put(execution_id, name, item[name]["S"])
            total -= size
            moved.append(name)
        if total > self.inline_limit:
            raise PayloadTooLarge(
                f"execution '{execution_id}': {total} bytes of payload in one item even after offloading; "
                f"at most {self.inline_limit} fit"
            )
        return moved

    def put(self, execution_id: str, name: str, text: str) -> Attr:
        data = text.encode()
        if self.bucket is None:
            raise PayloadTooLarge(
                f"execution '{execution_id}': {name} is {len(data)} bytes, more than a DynamoDB item holds "
                f"({self.inline_limit} bytes of payload), and no payload bucket is configured: set "
                "COAFI_PAYLOAD_BUCKET (the CDK app does) or pass payload_bucket= to StateStore"
            )
        key = f"{object_prefix(execution_id)}{name}-{secrets.token_hex(8)}.json"
        self._s3().put_object(Bucket=self.bucket, Key=key, Body=data, ContentType="application/json")
        return {"M": {"s3Bucket": s(self.bucket), "s3Key": s(key), "bytes": n(len(data)),
                      "sha256": s(hashlib.sha256(data).hexdigest())}}

    def load(self, attr: Attr | None) -> Any:
        """The value of a payload attribute: inline JSON, or the object a pointer names."""
        if not attr:
            return None
        if "S" in attr:
            return json.loads(attr["S"])
        if "M" not in attr:
            return None
        pointer = plain(attr["M"])
        key = str(pointer["s3Key"])
        with self._cache_lock:
            if key in self._cache:
                self._cache.move_to_end(key)
                return json.loads(self._cache[key])
        try:
            body = self._s3().get_object(Bucket=pointer["s3Bucket"], Key=key)["Body"].read()
        except Exception as exc:  # botocore's ClientError and connection errors alike
            raise PayloadUnavailable(f"payload s3://{pointer['s3Bucket']}/{key} cannot be read: {exc}") from exc
        if hashlib.sha256(body).hexdigest() != pointer.get("sha256", hashlib.sha256(body).hexdigest()):
            raise PayloadUnavailable(f"payload s3://{pointer['s3Bucket']}/{key} does not match its checksum")
        text = body.decode()
        with self._cache_lock:
            self._cache[key] = text
            while len(self._cache) > 16:
                self._cache.popitem(last=False)
        return json.loads(text)


def object_prefix(execution_id: str) -> str:
    """Where an execution's payload objects live: one prefix per execution, so it can be deleted as a whole."""
    return f"{OBJECT_ROOT}{quote(execution_id, safe='')}/"
