"""Argument checks of the operator commands, in-process (the CLI subprocess tests are in
tests/integration/test_operator_cli.py): refused before anything is sent."""

import pytest
from hookline.cli import main


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["requeue"], "give either a JOB_ID or --all"),
        (["requeue", "j1", "--all"], "give either a JOB_ID or --all"),
        (["requeue", "j1", "--queue", "q"], "--queue goes with --all"),
        (["requeue", "--all", "--queue", "bad queue"], "invalid queue name"),
        (["requeue", "--all", "--queue", "x" * 65], "invalid queue name"),
        (["cancel"], "required: job_id"),
        (["cancel", "a b"], "not a job id"),
        (["cancel", "x" * 201], "not a job id"),
        (["cancel", "j1", "--timeout", "soon"], "expected a duration"),
        (["cancel", "j1", "--timeout", "0"], "must be between 1ms and 1h"),
        (["cancel", "j1", "--timeout", "2h"], "must be between 1ms and 1h"),
        (["empty"], "required: what"),
        (["empty", "done"], "invalid choice: 'done'"),
        (["empty", "failed", "--queue", "a/b"], "invalid queue name"),
        (["config"], "required: COMMAND"),
    ],
)
def test_bad_arguments_exit_2_with_the_reason(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as info:
        main(argv)
    assert info.value.code == 2
    assert message in capsys.readouterr().err
