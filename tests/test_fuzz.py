"""Property tests: random and mutated real-shaped input never raises anything
but InputError, and each example finishes within a bound.

The default run draws about 10,000 examples in all (CI-friendly);
``KVM_REVIEW_FUZZ_EXAMPLES=N`` (``make fuzz``) scales every test so that the
total is about N.
"""

from __future__ import annotations

import datetime
import os
import re
from functools import cache
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from reviewer import mail, pipeline, render, series, sources
from reviewer import rules as rulesmod
from reviewer.errors import InputError
from reviewer.kvm import context as ccontext

SAMPLES = Path(__file__).resolve().parent.parent / "samples"
DEFAULT_TOTAL = 10_000
TOTAL = int(os.environ.get("KVM_REVIEW_FUZZ_EXAMPLES", DEFAULT_TOTAL))
# each test's share of the total (they sum to 1); the pipeline is the slow one
SHARES = {
    "split_mbox": 0.16, "messages": 0.12, "parse_diff_random": 0.14, "parse_diff_mutated": 0.15,
    "scan_hunk_side": 0.16, "scan_file": 0.15, "pipeline": 0.08, "pipeline_crafted": 0.04,
}
assert abs(sum(SHARES.values()) - 1) < 1e-9
DEADLINE = datetime.timedelta(seconds=5)  # per example: "finishes within a bound"


def fuzz(name: str):
    return settings(max_examples=max(1, round(TOTAL * SHARES[name])), deadline=DEADLINE, derandomize=TOTAL
                    <= DEFAULT_TOTAL, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
                    database=None)


@cache
def _samples() -> list[bytes]:
    return [p.read_bytes() for p in sorted(SAMPLES.glob("*.mbox"))]


@cache
def _ruleset() -> rulesmod.RuleSet:
    return rulesmod.load()


def _diffs() -> list[str]:
    out = []
    for raw in _samples():
        text = raw.decode("utf-8", "replace")
        for part in re.split(r"(?m)^From git@z .*\n", text):
            diff = series.diff_text(part.split("\n---\n", 1)[-1])
            if diff:
                out.append(diff.split("\n-- \n", 1)[0] + "\n")
    return out


DIFFS = _diffs()

# pieces of the shapes the parsers look for, so random input reaches deep
TOKENS = [
    "From git@z Thu Jan  1 00:00:00 1970\n", "From: A <a@example.org>\n", "Subject: [PATCH 1/2] x\n",
    "Subject: [PATCH 0/0] y\n", "Message-Id: <a@b>\n", "In-Reply-To: <a@b>\n", "References: <a@b> <c@d>\n",
    "Content-Transfer-Encoding: base64\n", "Content-Transfer-Encoding: quoted-printable\n",
    "Content-Type: text/plain; charset=\"iso-8859-1\"\n", "Content-Type: multipart/mixed; boundary=\"b\"\n",
    "--b\n", "--b--\n", "MIME-Version: 1.0\n", "=?utf-8?q?=0D=0ABcc:_x@y?=", "\n", "\r\n", "\n\n", "---\n",
    "-- \n", "diff --git a/arch/x86/kvm/cpuid.c b/arch/x86/kvm/cpuid.c\n", "--- a/x.c\n", "+++ b/x.c\n",
    "--- /dev/null\n", "+++ /dev/null\n", "@@ -1,3 +1,4 @@ static int f(int a,\n", "@@ -0,0 +1 @@\n",
    "@@ -1 +1 @@\n", " \treturn 0;\n", "+\tbest->ecx &= ~F(X);\n", "-\treturn -EINVAL;\n", "+\treturn -EINVAL;\n",
    "\\ No newline at end of file\n", "GIT binary patch\n", "literal 0\n", "Binary files a/x and b/x differ\n",
    "{\n", "}\n", "void kvm_vcpu_after_set_cpuid(struct kvm_vcpu *vcpu)\n", "#define X \\\n", "/*\n",
    " */\n", "label:\n", "static int g(struct kvm *kvm,\n", "\t\t    int b)\n", "Signed-off-by: A <a@b>\n",
    ">From x\n", "\x00", "\xff", "é", "\u2028", "(((((", ")))))",
]
token_text = st.lists(st.sampled_from(TOKENS) | st.text(max_size=20), max_size=40).map("".join)


@st.composite
def mutated(draw, base: bytes) -> bytes:
    """``base`` with a few byte- and line-level edits."""
    data = bytearray(base)
    for _ in range(draw(st.integers(1, 4))):
        op = draw(st.sampled_from(["delete", "insert", "flip", "truncate", "dup_line", "drop_line", "swap_lines",
                                   "token", "crlf"]))
        n = len(data)
        if op == "delete" and n:
            a = draw(st.integers(0, n - 1))
            del data[a:a + draw(st.integers(1, 64))]
        elif op == "insert":
            a = draw(st.integers(0, n))
            data[a:a] = draw(st.binary(min_size=1, max_size=16))
        elif op == "flip" and n:
            a = draw(st.integers(0, n - 1))
            data[a] = draw(st.integers(0, 255))
        elif op == "truncate" and n:
            data = data[:draw(st.integers(0, n))]
        elif op == "token":
            a = draw(st.integers(0, n))
            data[a:a] = draw(st.sampled_from(TOKENS)).encode("utf-8")
        elif op == "crlf":
            data = bytearray(bytes(data).replace(b"\n", b"\r\n"))
        else:
            lines = bytes(data).split(b"\n")
            i = draw(st.integers(0, len(lines) - 1))
            if op == "dup_line":
                lines.insert(i, lines[i])
            elif op == "drop_line":
                del lines[i]
            else:
                j = draw(st.integers(0, len(lines) - 1))
                lines[i], lines[j] = lines[j], lines[i]
            data = bytearray(b"\n".join(lines))
    return bytes(data)


mutated_sample = st.sampled_from(range(len(_samples()))).flatmap(lambda i: mutated(_samples()[i]))
mutated_diff = st.sampled_from(DIFFS).flatmap(lambda d: mutated(d.encode())).map(
    lambda b: b.decode("utf-8", "replace"))


# -- mbox splitting and mail parsing -----------------------------------------

@fuzz("split_mbox")
@given(st.one_of(st.binary(max_size=400), token_text.map(str.encode), mutated_sample))
def test_split_mbox_never_raises(data):
    chunks = sources.split_mbox(data)
    assert isinstance(chunks, list) and chunks
    assert all(isinstance(c, bytes) for c in chunks)


@fuzz("messages")
@given(st.one_of(st.binary(max_size=400), token_text.map(lambda t: t.encode("utf-8", "surrogateescape")),
                 mutated_sample))
def test_messages_only_input_error(data):
    try:
        msgs = sources._messages(data, "fuzz")
    except InputError:
        return
    for msg in msgs:
        assert msg.get("Message-ID")


# -- diffs ---------------------------------------------------------------------

def _check_diff(text: str) -> None:
    try:
        files = series.parse_diff(text, "fuzz")
    except InputError as exc:
        assert str(exc).startswith("fuzz: malformed diff: ")
        return
    for fdiff in files:
        assert isinstance(fdiff.path, str)
        for hunk in fdiff.hunks:
            for line in hunk.lines:
                assert line.kind in "+- "


@fuzz("parse_diff_random")
@given(st.one_of(token_text, st.text(max_size=300)))
def test_parse_diff_random(text):
    _check_diff(text)


@fuzz("parse_diff_mutated")
@given(mutated_diff)
def test_parse_diff_mutated(text):
    _check_diff(text)


# -- C function context ------------------------------------------------------

c_line = st.one_of(st.sampled_from([t.rstrip("\n") for t in TOKENS]), st.text(max_size=40))
c_lines = st.one_of(st.lists(c_line, max_size=40),
                    st.sampled_from(DIFFS).map(lambda d: [ln[1:] for ln in d.splitlines() if ln[:1] in " +-"]))


@fuzz("scan_hunk_side")
@given(c_line, c_lines)
def test_scan_hunk_side(header, lines):
    wheres = ccontext.scan_hunk_side(header, lines)
    assert len(wheres) == len(lines)
    assert all(w.kind in (ccontext.TOPLEVEL, ccontext.FUNCTION, ccontext.UNKNOWN) for w in wheres)


@fuzz("scan_file")
@given(c_lines)
def test_scan_file(lines):
    assert len(ccontext.scan_file(lines)) == len(lines)


# -- the whole pipeline --------------------------------------------------------

def _review(data: bytes, with_mail: bool) -> None:
    try:
        msgs = sources._messages(data, "fuzz")
        model = pipeline.load_series(msgs)
    except InputError as exc:
        assert "\n" not in str(exc)
        return
    review = pipeline.review(model, _ruleset())
    render.text(review)
    render.as_json(review)
    if with_mail:
        replies = mail.replies(review, mail.Identity("Rev Iewer", "rev@example.org"), reply_when_clean=True,
                               rules_by_id={r.id: r for r in _ruleset().rules})
        for reply in replies:
            raw = mail.as_bytes(reply.msg)
            head = raw.split(b"\n\n", 1)[0]
            assert not re.search(rb"(?mi)^bcc:", head)
            assert b"\r" not in head


@fuzz("pipeline")
@given(mutated_sample, st.booleans())
def test_pipeline_mutated_samples(data, with_mail):
    _review(data, with_mail)


@fuzz("pipeline_crafted")
@given(st.lists(st.sampled_from(TOKENS), min_size=1, max_size=60).map("".join))
def test_pipeline_crafted(text):
    _review(text.encode("utf-8", "surrogateescape"), with_mail=True)
