"""A CLI error prints the server's words and error code as text, never as Rich markup."""

from __future__ import annotations

import pytest

from hybridai.cli import _api


def test_an_error_code_in_brackets_is_printed(capsys: pytest.CaptureFixture[str]) -> None:
    exit_ = _api.fail("HTTP 400: rows the model was tested on [test_rows_leak]")
    assert exit_.exit_code == 1
    printed = capsys.readouterr().err
    assert "[test_rows_leak]" in printed
    assert "rows the model was tested on" in printed


def test_markup_in_a_message_is_not_interpreted(capsys: pytest.CaptureFixture[str]) -> None:
    _api.fail("stream [bold]x[/bold] refused")
    assert "[bold]x[/bold]" in capsys.readouterr().err
