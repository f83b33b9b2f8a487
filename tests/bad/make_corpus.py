"""Write the broken and hostile inputs of ``tests/bad/`` from the samples.

Run ``python tests/bad/make_corpus.py`` after changing a sample or this
script; the files are committed, and ``tests/test_bad_input.py`` checks each
one against ``expected.toml``. Every file is derived from a good sample so
that "still reviewed" can mean "the same findings as the sample".
"""

from __future__ import annotations

import base64
import quopri
import re
from pathlib import Path

HERE = Path(__file__).resolve().parent
SAMPLES = HERE.parent.parent / "samples"
ENVELOPE = b"From git@z Thu Jan  1 00:00:00 1970\n"


def sample(name: str) -> bytes:
    return (SAMPLES / name).read_bytes()


def split(raw: bytes) -> tuple[bytes, bytes]:
    """One message (no envelope) -> (headers without the blank line, body)."""
    head, _, body = raw.partition(b"\n\n")
    return head + b"\n", body


def one(name: str) -> bytes:
    """The single message of a one-patch sample, without its envelope line."""
    raw = sample(name)
    assert raw.startswith(ENVELOPE) and raw.count(b"\nFrom git@z ") == 0
    return raw[len(ENVELOPE):]


def with_header(head: bytes, name: bytes, value: bytes) -> bytes:
    """Replace header ``name`` (and its continuation lines) in ``head``."""
    out, n = re.subn(rb"(?m)^" + name + rb": .*\n(?:[ \t].*\n)*", name + b": " + value + b"\n", head)
    assert n == 1, name
    return out


def reencode(raw: bytes, cte: str) -> bytes:
    head, body = split(raw)
    head = with_header(head, b"Content-Transfer-Encoding", cte.encode())
    if cte == "base64":
        body = base64.encodebytes(body)
    else:
        body = quopri.encodestring(body)
    return head + b"\n" + body


def bump_hunk(raw: bytes, old: bytes, extra_lines: bytes, n: int) -> bytes:
    """Insert ``extra_lines`` (``n`` added lines) after the line ``old`` of
    the only hunk, and fix the hunk's new count."""
    assert raw.count(old) == 1
    raw = raw.replace(old, old + extra_lines)
    return re.sub(rb"@@ -(\d+),(\d+) \+(\d+),(\d+) @@",
                  lambda m: b"@@ -%s,%s +%s,%d @@" % (m[1], m[2], m[3], int(m[4]) + n), raw, count=1)


def corpus() -> dict[str, bytes]:
    s02 = one("02-add-adjustment.mbox")
    head02, body02 = split(s02)
    files: dict[str, bytes] = {}

    files["empty.mbox"] = b""
    files["blank.mbox"] = b"\n\n  \r\n\t\n"
    files["not-an-mbox.mbox"] = (b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00\x00\x10"
                                 b"\x00\x00\x00\x10\x08\x06\x00\x00\x00\x1f\xf3\xffa")
    files["plain-text.patch"] = b"Hello,\n\nplease apply the attached patch.\n\nThanks\n"
    files["envelope-only.mbox"] = ENVELOPE
    # cut inside the headers: a message with no body
    files["truncated-headers.mbox"] = ENVELOPE + s02[:s02.index(b"Date:")]
    # cut in the middle of the hunk
    cut = s02.index(b"+\tif (!xsave_leaf)")
    files["truncated-hunk.mbox"] = ENVELOPE + s02[:cut]
    # the hunk header promises more lines than follow
    files["wrong-counts.mbox"] = ENVELOPE + s02.replace(b"@@ -355,12 +355,42 @@", b"@@ -355,12 +355,52 @@")
    # a patch subject, a changelog, but no diff at all
    files["no-diff.mbox"] = ENVELOPE + s02[:s02.index(b"\n---\n") + 1]
    # a mail, but not a patch: no [PATCH] in the subject, no diff
    files["not-a-patch.mbox"] = ENVELOPE + with_header(head02, b"Subject", b"KVM: x86: a question about XCR0") \
        + b"\nDoes KVM still clear AVX-512 when XCR0 cannot enable it?\n"
    # a hunk line that is none of ' ', '+', '-', '\'
    files["garbage-in-hunk.mbox"] = ENVELOPE + s02.replace(b"\n \tbool allow_gbpages;\n",
                                                           b"\n*\tbool allow_gbpages;\n")
    # the same with a 100,000-character bad line: the error quotes only its start
    files["malformed-long-line.mbox"] = ENVELOPE + s02.replace(b"\n \tbool allow_gbpages;\n",
                                                               b"\n*" + b"y" * 100_000 + b"\n")

    # a GIT binary patch next to the text diff: the text part is reviewed
    binary = (b"diff --git a/firmware/kvm/blob.bin "
              b"b/firmware/kvm/blob.bin\n"
              b"new file mode 100644\n"
              b"index 0000000000000000000000000000000000000000.."
              b"0f0e5ac8e3bd4d8cd7b0e1c7e4c2b8c4d4f1a7b2\n"
              b"GIT binary patch\n"
              b"literal 16\n"
              b"XcmZQzfB*mi0RR91000000Kiy4p8x;=\n"
              b"\n"
              b"literal 0\n"
              b"HcmV?d00001\n"
              b"\n")
    files["binary-diff.mbox"] = ENVELOPE + s02.replace(b"diff --git a/arch/x86/kvm/cpuid.c",
                                                       binary + b"diff --git a/arch/x86/kvm/cpuid.c")
    files["binary-only.mbox"] = ENVELOPE + s02[:s02.index(b"diff --git ")] + binary + b"-- \n2.43.0\n"

    files["base64.mbox"] = ENVELOPE + reencode(s02, "base64")
    files["quoted-printable.mbox"] = ENVELOPE + reencode(s02, "quoted-printable")

    # ISO-8859-1, declared: an accented author name and changelog
    latin = with_header(head02, b"Content-Type", b'text/plain; charset="iso-8859-1"')
    latin = with_header(latin, b"From", b"=?iso-8859-1?q?Ren=E9_M=FCller?= <rene@example.org>")
    latin_body = body02.replace(b"Signed-off-by: Rasmus Lindqvist <r.lindqvist@example.org>",
                                "Signed-off-by: René Müller <rene@example.org>".encode("latin-1"))
    latin_body = latin_body.replace(b"crypto self-tests.", "crypto self-tests (« déjà vu »).".encode("latin-1"))
    files["iso-8859-1.mbox"] = ENVELOPE + latin + b"\n" + latin_body
    # declared UTF-8, but bytes that are not: in the changelog and in a diff line
    bad = body02.replace(b"crypto self-tests.", b"crypto self-tests \xff\xfe\xc3(.")
    bad = bad.replace(b"+ * opmask, ZMM_Hi256", b"+ * opmask \xe9\x80, ZMM_Hi256")
    files["invalid-utf8.mbox"] = ENVELOPE + head02 + b"\n" + bad
    # the same, and no charset at all
    files["undeclared-8bit.mbox"] = ENVELOPE + re.sub(rb"(?m)^Content-Type: .*\n", b"", head02) + b"\n" + bad

    html = (b"<html><body><p>Clear AVX-512 in guest CPUID.</p><pre>"
            + body02[body02.index(b"diff --git"):].replace(b"&", b"&amp;").replace(b"<", b"&lt;")
            + b"</pre></body></html>\n")
    files["html-only.mbox"] = ENVELOPE + with_header(head02, b"Content-Type", b'text/html; charset="utf-8"') \
        + b"\n" + html

    files["crlf.mbox"] = (ENVELOPE + s02).replace(b"\n", b"\r\n")

    long_line = b"+\t/* " + b"x" * 100_000 + b" */\n"
    files["long-line.mbox"] = ENVELOPE + bump_hunk(s02, b"+\tu64 xcr0;\n", long_line, 1)
    # a 100,000-character line a rule pattern could chew on
    hostile = b"+\tbest->edx &= ~(" + b"(" * 50_000 + b"feature_bit(X" + b")" * 49_990 + b";\n"
    files["regex-hostile-line.mbox"] = ENVELOPE + bump_hunk(s02, b"+\tu64 xcr0;\n", hostile, 1)

    # 10,000 hunks in a C file, before the sample's own diff
    hunks = [b"diff --git a/arch/x86/kvm/mmu/many.c b/arch/x86/kvm/mmu/many.c\n",
             b"--- a/arch/x86/kvm/mmu/many.c\n+++ b/arch/x86/kvm/mmu/many.c\n"]
    for i in range(10_000):
        n = 10 * i + 1
        hunks.append(b"@@ -%d,2 +%d,2 @@ static int f%d(void)\n \tint a;\n-\treturn %d;\n+\treturn -%d;\n"
                     % (n, n, i, i, i))
    files["many-hunks.mbox"] = ENVELOPE + s02.replace(b"diff --git a/arch/x86/kvm/cpuid.c",
                                                      b"".join(hunks) + b"diff --git a/arch/x86/kvm/cpuid.c")

    s04 = sample("04-check-cpuid-einval.mbox")
    # a series cut inside the headers of its last message
    files["truncated-series.mbox"] = s04[:s04.index(b"Subject: [PATCH 2/2]")]
    files["series-3-of-2.mbox"] = s04.replace(b"Subject: [PATCH 2/2]", b"Subject: [PATCH 3/2]")
    # one patch of the series cannot be read: the rest is reviewed, that one is an error finding
    two = s04.index(b"Subject: [PATCH 2/2]")
    head04, patch2 = s04[:two], s04[two:]
    files["series-malformed-patch.mbox"] = head04 + patch2.replace(b"@@ -173,6 +173,28 @@", b"@@ -173,6 +173,38 @@")
    diff2 = patch2.index(b"\ndiff --git")
    files["series-no-diff-patch.mbox"] = head04 + patch2[:diff2 + 1] + patch2[patch2.index(b"\n-- \n") + 1:]
    head2, _, body2 = patch2.partition(b"\n\n")
    files["series-bad-base64-patch.mbox"] = (head04 + head2.replace(b"Content-Transfer-Encoding: 8bit",
                                                                   b"Content-Transfer-Encoding: base64")
                                             + b"\n\n" + b"!!!! this is not base64 @@@@\n" * 3 + b"\n")

    # two different patches under one Message-ID
    msgid = b"<20250114112010.1207335-2-priya.raman@example.com>"
    files["duplicate-msgid.mbox"] = re.sub(rb"Message-Id: <20250114112011\.1207335-3-priya\.raman@example\.com>",
                                           b"Message-Id: " + msgid, s04)
    # the same message twice (as a list archive and a personal copy give it)
    files["duplicate-message.mbox"] = ENVELOPE + s02 + b"\n" + ENVELOPE + s02

    # a cover letter whose body carries a KVM diff: not part of the series
    s05 = one("05-enable-cap-reject.mbox")
    cover_head = with_header(split(s05)[0], b"Subject", b"[PATCH 0/1] KVM: x86: Reject unknown values")
    cover_head = with_header(cover_head, b"Message-Id", b"<cover-0@example.org>")
    cover_body = (b"A cover letter that quotes a diff, which is not part of the series:\n\n"
                  + body02[body02.index(b"diff --git"):body02.index(b"-- \n")] + b"\nThanks\n")
    patch_head = with_header(split(s05)[0], b"Subject", b"[PATCH 1/1] KVM: x86: Reject unknown values for"
                             b" KVM_CAP_EXIT_ON_EMULATION_FAILURE")
    patch_head += b"In-Reply-To: <cover-0@example.org>\nReferences: <cover-0@example.org>\n"
    files["cover-with-diff.mbox"] = (ENVELOPE + cover_head + b"\n" + cover_body + b"\n"
                                     + ENVELOPE + patch_head + b"\n" + split(s05)[1])

    # header injection: an encoded CR/LF in the Subject, a Bcc after it;
    # the reply must carry neither
    inj = with_header(head02, b"Subject",
                      b"=?utf-8?b?" + base64.b64encode(b"[PATCH] KVM: x86: Clear AVX-512\r\nBcc: victim@example.net"
                                                       b"\r\n\r\nInjected body") + b"?=")
    files["header-injection.mbox"] = ENVELOPE + inj + b"\n" + body02
    # the same in address headers (From, Cc), where the stdlib refuses them
    inj = with_header(head02, b"From", b"=?utf-8?q?Evil=0D=0ABcc=3A_victim2=40example=2Enet?= "
                      b"<r.lindqvist@example.org>")
    inj = inj.replace(b"Cc: linux-kernel@vger.kernel.org\n",
                      b"Cc: linux-kernel@vger.kernel.org,\n"
                      b" =?utf-8?q?x=0D=0ABcc=3A_v3=40example=2Enet?= <v3@example.net>\n")
    files["address-injection.mbox"] = ENVELOPE + inj + b"\n" + body02

    # NUL bytes and control characters in headers and body
    nul = with_header(head02, b"Subject", b"[PATCH] KVM: x86: \x00Clear\x1b[31m AVX-512")
    files["nul-bytes.mbox"] = ENVELOPE + nul + b"\n" + body02.replace(b"crypto self-tests.", b"crypto\x00 self-tests.")

    # MIME structure over the limits (reviewer/limits.py), refused before parsing
    mime_head = re.sub(rb"(?m)^Content-(Type|Transfer-Encoding): .*\n", b"", head02)
    nested = [mime_head]
    for i in range(3000):
        nested.append(b'Content-Type: multipart/mixed; boundary="n%d"\n\n--n%d\n' % (i, i))
    nested.append(b'Content-Type: text/plain; charset="utf-8"\n\n' + body02)
    nested += [b"--n%d--\n" % i for i in reversed(range(3000))]
    files["nested-mime.mbox"] = ENVELOPE + b"".join(nested)
    rfc822 = [mime_head] + [b"Content-Type: message/rfc822\n\nSubject: inner %d\n" % i for i in range(100)]
    files["nested-rfc822.mbox"] = ENVELOPE + b"".join(rfc822) + b"Content-Type: text/plain\n\n" + body02
    parts = [mime_head, b'Content-Type: multipart/mixed; boundary="p"\n\n']
    parts += [b"--p\nContent-Type: text/plain\n\npart %d\n" % i for i in range(300)]
    files["many-parts.mbox"] = ENVELOPE + b"".join(parts) + b"--p--\n"
    files["many-headers.mbox"] = ENVELOPE + head02 + b"".join(b"X-Filler-%d: x\n" % i for i in range(1000)) \
        + b"\n" + body02
    # within the limits: the patch as an attachment next to a note, in multipart/mixed
    files["multipart-attachment.mbox"] = (ENVELOPE + mime_head + b'Content-Type: multipart/mixed; boundary="a"\n\n'
                                          b"--a\nContent-Type: text/plain\n\nThe patch is attached.\n"
                                          b'--a\nContent-Type: text/x-patch; charset="utf-8"\n'
                                          b"Content-Disposition: attachment; filename=p.patch\n\n"
                                          + body02 + b"--a--\n")
    return files


def main() -> None:
    keep = {"make_corpus.py", "expected.toml"}
    for old in HERE.iterdir():
        if old.name not in keep and old.is_file():
            old.unlink()
    for name, data in corpus().items():
        (HERE / name).write_bytes(data)


if __name__ == "__main__":
    main()
