"""The one exception-to-line mapping (hfllm.errors.user_line) and checks that need no model: what the user
can fix is one line, whatever raised it; a bug keeps its traceback (None)."""

from __future__ import annotations

import pytest

from hfllm.checks import check_memory
from hfllm.errors import UserError, user_line


def chained(outer: Exception, inner: BaseException) -> Exception:
    try:
        try:
            raise inner
        except BaseException as exc:
            raise outer from exc
    except Exception as exc:  # noqa: BLE001
        return exc


def test_a_name_holding_a_newline_stays_one_line():
    assert user_line(UserError("dataset has no column 'te\nxt'")) == "dataset has no column 'te\\nxt'"


def test_the_hub_out_of_reach_is_one_line_wherever_it_is_in_the_chain():
    class OfflineModeIsEnabled(Exception):  # huggingface_hub's, by name: the mapping reads names
        pass

    class ConnectError(Exception):
        pass

    line = user_line(chained(RuntimeError("upload failed"), OfflineModeIsEnabled("offline")))
    assert line.startswith("the Hub cannot be reached: offline mode is on (HF_HUB_OFFLINE=1)")
    line = user_line(chained(ValueError("x"), ConnectError("[Errno -3] Temporary failure\nin name resolution")))
    assert line.startswith("the Hub cannot be reached (ConnectError: [Errno -3] Temporary failure") and "\n" not in line


def test_out_of_memory_is_one_line_and_a_bug_is_not():
    assert user_line(chained(RuntimeError("x"), MemoryError())).startswith("out of memory: lower")
    assert user_line(ValueError("a bug")) is None
    assert user_line(KeyError("a bug")) is None


def test_a_model_larger_than_the_machine_is_refused_before_allocating():
    with pytest.raises(UserError, match=r"^a model needs ~931322574.6 GB of memory; this machine has [0-9.]+ GB"):
        check_memory(10**18, "a model")
    check_memory(1024, "a model")  # fits: nothing said


def test_an_unresolvable_host_is_named_as_such():
    from hfllm.app.launch import check_host

    with pytest.raises(UserError, match=r"^--host 'no-such-host\.invalid' is not an address this machine can bind"):
        check_host("no-such-host.invalid")
    check_host("127.0.0.1")
