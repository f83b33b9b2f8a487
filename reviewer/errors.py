"""Errors that end a run with a documented exit status and one line."""

EXIT_CLEAN = 0
EXIT_FINDINGS = 1
EXIT_INPUT = 2
EXIT_INTERNAL = 3


class InputError(Exception):
    """Bad input, bad usage or an unreachable source: exit 2, one line."""

    exit_status = EXIT_INPUT

    def __str__(self) -> str:
        text = " ".join(str(a) for a in self.args)
        # one line, whatever the cause carried
        return " ".join(text.split())


class MaybeSent(InputError):
    """A mail's connection failed after its last line had gone out: the
    server may have taken it. Not to be sent again without a human's word."""


class BrokenPack(Exception):
    """The built-in rule pack or its templates are missing or do not load:
    the installation is broken (exit 3, one line), never a shorter review."""

    exit_status = EXIT_INTERNAL

    def __str__(self) -> str:
        return "the built-in rule pack is broken: " + " ".join(" ".join(str(a) for a in self.args).split())
