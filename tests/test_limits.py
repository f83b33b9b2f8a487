"""MIME nesting, parts, header fields and size have limits, checked on the raw
bytes before anything parses them: one line and exit 2 at every entry point
(a file: tests/bad/, stdin, lore; the bot: tests/test_bot_survival.py)."""

from __future__ import annotations

import subprocess
import sys

import pytest

from reviewer import limits, sources
from reviewer.cli import main
from tests.conftest import ROOT
from tests.lore_server import lore_server, sample_bytes  # noqa: F401
from tests.test_bot_survival import nested_reply

HEAD = b"From: A <a@example.org>\nSubject: [PATCH] x\nMessage-ID: <m@example.org>\nMIME-Version: 1.0\n"


def nested(depth: int, boundary: bytes | None = None) -> bytes:
    """``depth`` multipart parts inside each other (one boundary for all, if given)."""
    names = [boundary or b"b%d" % i for i in range(depth)]
    return (HEAD + b"".join(b'Content-Type: multipart/mixed; boundary="%s"\n\n--%s\n' % (n, n) for n in names)
            + b"Content-Type: text/plain\n\nhello\n" + b"".join(b"--%s--\n" % n for n in reversed(names)))


def encoded(depth: int) -> bytes:
    """``depth`` multipart parts inside each other, their boundaries in RFC 2231 form."""
    return (HEAD + b"".join(b"Content-Type: multipart/mixed; boundary*0=\"e%d\"\n\n--e%d\n" % (i, i)
                            for i in range(depth))
            + b"Content-Type: text/plain\n\nhello\n" + b"".join(b"--e%d--\n" % i for i in reversed(range(depth))))


def siblings(parts: int) -> bytes:
    return (HEAD + b'Content-Type: multipart/mixed; boundary="p"\n\n'
            + b"".join(b"--p\nContent-Type: text/plain\n\npart\n" for _ in range(parts)) + b"--p--\n")


def headers(fields: int, mime: bool) -> bytes:
    """A message of ``fields`` header fields (HEAD's four among them)."""
    if not mime:
        return HEAD + b"".join(b"X-F: %d\n" % i for i in range(fields - 4)) + b"\nhello\n"
    # the part's own header block counts too: Content-Type above, X-Part in the part
    return (HEAD + b"".join(b"X-F: %d\n" % i for i in range(fields - 6))
            + b'Content-Type: multipart/mixed; boundary="p"\n\n--p\nX-Part: 1\n\nhi\n--p--\n')


@pytest.mark.parametrize("raw, problem", [
    (nested(limits.MAX_DEPTH), None),
    (nested(limits.MAX_DEPTH + 1), "MIME parts nested deeper than 16 levels"),
    # the same boundary at every level still nests, as the stdlib parser reads it
    (nested(limits.MAX_DEPTH + 1, b"same"), "MIME parts nested deeper than 16 levels"),
    # a boundary the scan does not read still counts as a level
    (encoded(limits.MAX_DEPTH), None),
    (encoded(limits.MAX_DEPTH + 1), "MIME parts nested deeper than 16 levels"),
    (siblings(limits.MAX_PARTS), None),
    (siblings(limits.MAX_PARTS + 1), "more than 256 MIME parts"),
    (headers(limits.MAX_HEADERS, mime=False), None),
    (headers(limits.MAX_HEADERS + 1, mime=False), "more than 1000 header fields"),
    (headers(limits.MAX_HEADERS, mime=True), None),
    (headers(limits.MAX_HEADERS + 1, mime=True), "more than 1000 header fields"),
])
def test_limits(raw, problem):
    assert limits.problem(raw) == problem


@pytest.mark.parametrize("make", [nested, encoded])
def test_within_the_limits_the_parser_agrees(make):
    """At the depth limit the stdlib's parser (b4's policy) reads every level."""
    msg = sources._messages(make(limits.MAX_DEPTH), "x")[0]
    depth = 0
    while msg.is_multipart():
        msg, depth = msg.get_payload(0), depth + 1
    assert depth == limits.MAX_DEPTH and msg.get_content() == "hello"


def test_message_size(monkeypatch):
    monkeypatch.setattr(limits, "MAX_MESSAGE_BYTES", 1024)
    assert limits.problem(HEAD + b"\n" + b"x" * 1024) == "message larger than 0 MiB"
    monkeypatch.setattr(limits, "MAX_INPUT_BYTES", 1024)
    with pytest.raises(sources.InputError, match="^x: input larger than 0 MiB$"):
        sources._messages(HEAD + b"\n" + b"x" * 1024, "x")


def test_stdin_is_one_line_and_exit_2():
    proc = subprocess.run([sys.executable, "-m", "reviewer", "review", "-"], cwd=ROOT, capture_output=True,
                          input=(ROOT / "tests" / "bad" / "nested-mime.mbox").read_bytes(), check=False)
    assert proc.returncode == 2 and proc.stdout == b""
    assert proc.stderr == b"kvm-review: error: stdin: message 1: MIME parts nested deeper than 16 levels\n"


def test_lore_thread_is_one_line_and_exit_2(lore_server, capsys, monkeypatch):  # noqa: F811
    monkeypatch.setenv("KVM_REVIEW_LORE_RATE", "0")
    lore_server.import_mbox(sample_bytes("05-enable-cap-reject.mbox"))
    lore_server.deliver(nested_reply())
    lore_server.start()
    status = main(["review", "20241022011534.553190-1-hwang.jiho@example.com", "--lore", lore_server.url])
    out, err = capsys.readouterr()
    assert (status, out) == (2, "")
    assert err == ("kvm-review: error: thread of 20241022011534.553190-1-hwang.jiho@example.com: message 2: "
                   "MIME parts nested deeper than 16 levels\n")


def test_a_thread_keeps_its_mails_within_the_limits():
    """What the bot does with a fetched thread: the mails over the limits are
    left out and named, the others kept byte for byte (mboxrd)."""
    from reviewer import b4glue

    good = b"From: A <a@example.org>\nSubject: x\nMessage-ID: <g@example.org>\n\n>From the body\nok\n"
    mbox = b"".join(b"From mboxrd@z Thu Jan  1 00:00:00 1970\n" + m.replace(b"\n>From", b"\n>>From") + b"\n"
                    for m in (good, nested(limits.MAX_DEPTH + 1), good.replace(b"<g@", b"<h@")))
    skipped: list[str] = []
    kept = b4glue._within_limits(mbox, "thread of t@example.org", skipped)
    assert skipped == ["message 2 skipped: MIME parts nested deeper than 16 levels"]
    assert [m["Message-ID"] for m in b4glue.b4.split_and_dedupe_pi_results(kept)] == ["<g@example.org>",
                                                                                   "<h@example.org>"]
    assert kept.count(b"\n>>From the body\n") == 2
    with pytest.raises(sources.InputError, match="^thread of t@example.org: message 2: MIME parts nested"):
        b4glue._within_limits(mbox, "thread of t@example.org", None)
    with pytest.raises(sources.InputError, match="^thread of t@example.org: every message is over the limits"):
        b4glue._within_limits(b"From mboxrd@z Thu Jan  1 00:00:00 1970\n" + nested(limits.MAX_DEPTH + 1),
                              "thread of t@example.org", [])


# -- the scan never counts less than the parser reads ---------------------------------

from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

BOUNDARIES = [b"a", b"b", b"=_x", b"same"]  # few: reused boundaries are the tricky case
leaves = st.just(("leaf",))
trees = st.recursive(leaves, lambda kids: st.one_of(
    st.tuples(st.just("multipart"), st.sampled_from(BOUNDARIES), st.sampled_from(["quoted", "bare", "rfc2231"]),
              st.lists(kids, min_size=1, max_size=3)),
    st.tuples(st.just("message"), kids)), max_leaves=12)


def render(tree, folded: bool) -> bytes:
    """A part: its header block, a blank line, its body."""
    if tree[0] == "leaf":
        return b"Content-Type: text/plain\n\nleaf\n"
    if tree[0] == "message":
        return b"Content-Type: message/rfc822\n\nSubject: inner\n" + render(tree[1], folded)
    _, boundary, form, kids = tree
    param = {"quoted": b'boundary="%s"', "bare": b"boundary=%s", "rfc2231": b'boundary*0="%s"'}[form] % boundary
    head = b"Content-Type:" + (b"\n " if folded else b" ") + b"multipart/mixed; " + param + b"\n\n"
    return head + b"".join(b"--%s\n" % boundary + render(k, folded) for k in kids) + b"--%s--\n" % boundary


def read_depth_and_parts(msg) -> tuple[int, int]:
    """How deep the parser nested, and how many parts it made (no recursion)."""
    deepest, parts, todo = 0, 0, [(msg, 0)]
    while todo:
        part, depth = todo.pop()
        deepest = max(deepest, depth)
        payload = part.get_payload()
        if isinstance(payload, list):  # multipart, or message/rfc822 (one message)
            parts += len(payload) if part.is_multipart() and part.get_content_maintype() == "multipart" else 0
            todo += [(p, depth + 1) for p in payload]
    return deepest, parts


@settings(max_examples=300, deadline=None, derandomize=True, database=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(tree=trees, folded=st.booleans())
def test_the_scan_never_reads_less_than_the_parser(tree, folded, monkeypatch):
    from reviewer import b4glue

    monkeypatch.setattr(limits, "MAX_DEPTH", 3)
    monkeypatch.setattr(limits, "MAX_PARTS", 6)
    raw = HEAD + render(tree, folded)
    depth, parts = read_depth_and_parts(b4glue.parse_bytes(raw))
    problem = limits.problem(raw)
    if problem is None:
        assert depth <= limits.MAX_DEPTH and parts <= limits.MAX_PARTS
    if depth > limits.MAX_DEPTH or parts > limits.MAX_PARTS:
        assert problem is not None
