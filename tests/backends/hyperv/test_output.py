"""What a command's end means: its JSON, PowerShell's CLIXML on stderr, and a command that is
done even when the host fails to release it."""

from __future__ import annotations

import pytest

from hvballoon.backends.hyperv._client import ShellRunner, stderr_text
from hvballoon.backends.hyperv._errors import ERRORS, RemoteScriptError
from hvballoon.backends.hyperv._scripts import READ
from hvballoon.errors import BackendError
from hvballoon.units import GiB
from tests.support.hyperv.fakehost import PROGRESS_CLIXML
from tests.support.hyperv.peer import Peer
from tests.support.winrm.server import INTERNAL_ERROR

#: What powershell.exe writes to a redirected stderr when a command fails before the script
#: can print its own record (an uncaught error, a parse error): the error stream as CLIXML,
#: one <S S="Error"> per line, CR LF escaped as _x000D__x000A_, after the progress records.
ERROR_CLIXML = (
    PROGRESS_CLIXML
    + '<Objs Version="1.1.0.1" xmlns="http://schemas.microsoft.com/powershell/2004/04">'
    + '<S S="Error">Get-VM : You do not have the required permission to complete this task. '
    + "Contact the administrator of the authorization policy for the computer &apos;HV01&apos;._x000D__x000A_</S>"
    + '<S S="Error">At line:1 char:1_x000D__x000A_</S>'
    + '<S S="Error">+ Get-VM &lt;&lt;&lt;&lt; _x000D__x000A_</S></Objs>\r\n'
)


def _failure(out: str, err: str, code: int) -> RemoteScriptError:
    with pytest.raises(RemoteScriptError) as info:
        ShellRunner._parse(READ, out.encode(), err.encode(), code)
    return info.value


def test_a_clixml_error_reads_as_its_text() -> None:
    failure = _failure("", ERROR_CLIXML, 1)
    assert failure.remote_message == (
        "Get-VM : You do not have the required permission to complete this task. Contact the "
        "administrator of the authorization policy for the computer 'HV01'. At line:1 char:1 "
        "+ Get-VM <<<<"
    )
    error = ERRORS.map(failure, "the read script")
    assert isinstance(error, BackendError)
    assert "permission to complete this task" in str(error)
    assert not any(markup in str(error) for markup in ("CLIXML", "<Objs", "_x000D_", "&apos;"))


@pytest.mark.parametrize(
    ("out", "shown"),
    [
        ("null", "'null'"),
        ('[{"Id":"307c5e41","Name":"web01","Memory', '\'[{"Id":"307c5e41"'),  # cut short
        ("Some text that is not JSON", "'Some text that is not JSON'"),
        ("", "no output"),
    ],
    ids=["null", "truncated", "text", "nothing"],
)
def test_output_that_is_not_the_document_says_what_came(out: str, shown: str) -> None:
    # PowerShell 5.1 writes its progress record to stderr on success too: it is not the problem
    failure = _failure(out, PROGRESS_CLIXML, 0)
    assert failure.error_id == "MalformedOutput"
    assert shown in (failure.remote_message or "")
    assert "CLIXML" not in (failure.remote_message or "")


def test_an_error_without_text_says_so() -> None:
    assert _failure("", "", 1).remote_message == "no output"
    assert _failure("", PROGRESS_CLIXML, 1).remote_message == "no output"
    # stderr that is not CLIXML (cmd.exe) is kept as written
    assert (
        _failure("", "The command line is too long.\r\n", 1).remote_message == "The command line is too long."
    )


def test_stderr_text_keeps_only_the_error_stream() -> None:
    warning = '#< CLIXML\r\n<Objs Version="1.1.0.1"><S S="warning">careful_x000D__x000A_</S></Objs>'
    assert stderr_text(warning.encode()) == ""
    assert stderr_text(b"") == ""
    assert stderr_text("\ufeffplain words \r\n".encode()) == "plain words"


@pytest.mark.peer
def test_a_done_command_stands_when_the_host_fails_to_release_it(basic_peer: Peer) -> None:
    # Signal (terminate) only releases a command whose output is all in: its failure must not
    # report a change the host made as failed, nor lose a read.
    with basic_peer.connect() as hv:
        basic_peer.server.fail_next("Signal", INTERNAL_ERROR)
        assert len(hv.get_stats()) == 10
        before = hv.get_stats("web01")[0].target_bytes
        assert before is not None
        # the session reads, then sets: the set's Signal fails
        basic_peer.server.fail_next("Signal", INTERNAL_ERROR)
        basic_peer.server.fail_next("Signal", INTERNAL_ERROR)
        change = hv.set_target("web01", before + GiB)
        assert change.changed and change.after["target_bytes"] == before + GiB
        assert hv.get_stats("web01")[0].target_bytes == before + GiB
