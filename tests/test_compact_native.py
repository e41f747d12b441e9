"""The compiled compact decoder (busfleet/compact_build.py) is the pure one, only faster.

Both are built from protocols/compact_decode.py; these tests hold them to the same output
and the same refusals (message included) on valid batches and on damaged ones, and check
that `protocols.compact` falls back to the pure module when the compiled one is missing or
was built from another source.
"""

from __future__ import annotations

import importlib
import subprocess
import sys
from collections.abc import Callable

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from protocols import compact, compact_decode
from protocols.compact import encode_batch
from protocols.topics import valid_bus_id
from tests.test_compact_codec import batches

Decoder = Callable[[bytes, Callable[[str], bool]], dict[str, object]]


def native() -> Decoder:
    try:
        module = importlib.import_module(compact.NATIVE_MODULE)
    except ImportError:
        pytest.fail("the compiled decoder is not built: run ./run setup")
    decode: Decoder = module.decode_compact
    return decode


def outcome(decode: Decoder, data: bytes) -> str:
    """What the decoder made of `data`, exactly: the repr of its batch or of its error."""
    try:
        return repr(decode(data, valid_bus_id))
    except (ValueError, OverflowError, IndexError) as exc:
        return f"{type(exc).__name__}: {exc}"


def test_the_compiled_decoder_is_built_and_in_use() -> None:
    native()
    assert compact.NATIVE, "protocols._compact_native is stale: run ./run setup"


@settings(max_examples=300)
@given(batches())
def test_both_decoders_give_the_same_batch(batch: object) -> None:
    data = encode_batch(batch)  # type: ignore[arg-type]
    assert outcome(native(), data) == outcome(compact_decode.decode_compact, data)
    assert not outcome(native(), data).startswith(("ValueError", "OverflowError"))


@settings(max_examples=500)
@given(batches(max_size=8), st.data())
def test_both_decoders_refuse_a_damaged_batch_alike(batch: object, data: st.DataObject) -> None:
    payload = bytearray(encode_batch(batch))  # type: ignore[arg-type]
    for _ in range(data.draw(st.integers(1, 4))):
        how = data.draw(st.sampled_from(["flip", "cut", "append", "byte"]))
        if how == "flip" and len(payload) > 1:
            i = data.draw(st.integers(1, len(payload) - 1))
            payload[i] ^= 1 << data.draw(st.integers(0, 7))
        elif how == "cut":
            del payload[data.draw(st.integers(1, max(1, len(payload)))) :]
        elif how == "append":
            payload += data.draw(st.binary(min_size=1, max_size=8))
        elif len(payload) > 1:
            payload[data.draw(st.integers(1, len(payload) - 1))] = data.draw(st.integers(0, 255))
    damaged = bytes(payload)
    assert outcome(native(), damaged) == outcome(compact_decode.decode_compact, damaged)


@settings(max_examples=300)
@given(st.binary(max_size=64))
def test_both_decoders_refuse_noise_alike(noise: bytes) -> None:
    data = bytes([compact.COMPACT_VERSION]) + noise
    assert outcome(native(), data) == outcome(compact_decode.decode_compact, data)


def test_a_stale_build_is_not_used(monkeypatch: pytest.MonkeyPatch) -> None:
    module = importlib.import_module(compact.NATIVE_MODULE)
    monkeypatch.setattr(module, "SOURCE_DIGEST", "0" * 64)
    decode, is_native = compact._decoder()
    assert (decode, is_native) == (compact_decode.decode_compact, False)


def test_without_the_compiled_module_the_pure_one_decodes() -> None:
    script = (
        "import sys; sys.modules['protocols._compact_native'] = None\n"  # as if never built
        "from protocols import compact, compact_decode\n"
        "from protocols.schemas import TelemetryBatch, TelemetryRecord\n"
        "batch = TelemetryBatch(bus='b1', records=[TelemetryRecord(seq=5, t=1.5)])\n"
        "assert compact._decode_compact is compact_decode.decode_compact\n"
        "assert compact.decode_batch(compact.encode_batch(batch)) == batch\n"
        "print(compact.NATIVE)\n"
    )
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "False"
