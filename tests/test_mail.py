"""Replies and machine formats: golden files for every format on every
sample, a real SMTP server on 127.0.0.1, and header injection.

Golden files change on purpose only: KVM_REVIEW_UPDATE_GOLDEN=1 rewrites them.
"""

from __future__ import annotations

import asyncio
import datetime
import email
import email.policy
import itertools
import os
import socket
import time

import b4  # noqa: F401 - imported on purpose: it changes the stdlib's utf-8 charset
import pytest

from reviewer import deliver, mail, pipeline, render, rules, sources
from tests.conftest import ROOT, SAMPLES

GOLDEN = ROOT / "tests" / "golden"
ME = mail.Identity("Rev Iewer", "reviewer@example.org")
NOW = datetime.datetime(2026, 11, 25, 12, 0, 0, tzinfo=datetime.UTC)
NAMES = sorted(p.name for p in SAMPLES.glob("*.mbox"))


def fixed_ids():
    counter = itertools.count(1)
    return lambda: f"<kvm-review-test-{next(counter)}@example.org>"


def review_of(name: str | os.PathLike, text: bytes | None = None) -> pipeline.Review:
    msgs = sources._messages(text, "test") if text is not None else sources.from_path(str(SAMPLES / name))
    return pipeline.review(pipeline.load_series(msgs), rules.load())


def replies_of(review, **kw):
    return mail.replies(review, ME, now=NOW, make_msgid=fixed_ids(), **kw)


FORMATS = {
    "txt": lambda r: render.text(r),
    "json": lambda r: render.as_json(r),
    "checkpatch": lambda r: render.checkpatch(r),
    "b4check.json": lambda r: render.b4_check(r),
    "md": lambda r: render.markdown(r),
    "mbox": lambda r: mail.as_mbox(replies_of(r)),
}


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("ext", sorted(FORMATS))
def test_golden(name, ext):
    got = FORMATS[ext](review_of(name))
    path = GOLDEN / f"{name.removesuffix('.mbox')}.{ext}"
    if os.environ.get("KVM_REVIEW_UPDATE_GOLDEN") == "1":
        path.write_text(got, encoding="utf-8")
    assert got == path.read_text(encoding="utf-8")


def parse(raw: bytes) -> email.message.EmailMessage:
    return email.message_from_bytes(raw, policy=email.policy.default)


def test_reply_headers_threading_and_body():
    review = review_of("01-sgx-xcr0-abi.mbox")
    out = replies_of(review)
    assert [r.patch for r in out] == [0, 2]
    cover, patch2 = (parse(mail.as_bytes(r.msg)) for r in out)
    assert cover["Subject"] == "Re: [PATCH v2 0/3] KVM: x86: SGX vs. XCR0 cleanups"
    assert cover["In-Reply-To"] == "<20230503184217.2961044-1-kgallagher@example.com>"
    assert cover["References"] == "<20230503184217.2961044-1-kgallagher@example.com>"
    assert patch2["In-Reply-To"] == "<20230503184219.2961044-3-kgallagher@example.com>"
    assert patch2["References"].split() == ["<20230503184217.2961044-1-kgallagher@example.com>",
                                            "<20230503184219.2961044-3-kgallagher@example.com>"]
    assert patch2["To"] == "Kieran Gallagher <kgallagher@example.com>"
    cc = [a.strip() for a in patch2["Cc"].split(",")]
    assert "kvm@vger.kernel.org" in cc and len(cc) == len(set(cc))
    assert "kgallagher@example.com" not in patch2["Cc"] and "reviewer@example.org" not in patch2["Cc"]
    assert patch2["From"] == "Rev Iewer <reviewer@example.org>"
    assert patch2["Message-ID"] == "<kvm-review-test-2@example.org>"
    assert patch2["Date"] == "Wed, 25 Nov 2026 12:00:00 +0000"
    assert patch2.get_content_type() == "text/plain" and not patch2.is_multipart()
    body = patch2.get_content()
    assert body.startswith("On Wed, 03 May 2023 11:42:19 -0700, Kieran Gallagher wrote:\n> diff --git ")
    assert "> -\t\tbest->ecx |= XFEATURE_MASK_FPSSE;\n\nThis removes an adjustment" in body


@pytest.mark.parametrize("name", NAMES)
def test_body_lines_fit_72_columns_except_quotes(name):
    for reply in replies_of(review_of(name), reply_when_clean=True):
        body = reply.msg.get_content()
        long = [ln for ln in body.splitlines() if len(ln) > 72 and not ln.startswith(">")]
        assert long == [], long


def test_no_re_re():
    parent = email.message.EmailMessage()
    parent["Subject"] = "RE: Re: [PATCH v2 1/2] KVM: x86: Validate writes"
    parent["Message-ID"] = "<a.b@example.com>"
    msg = mail._headers(parent, ("A", "a@example.com"), parent["Subject"], ME, NOW, fixed_ids())
    assert msg["Subject"] == "Re: [PATCH v2 1/2] KVM: x86: Validate writes"


def test_utf8_names_are_encoded():
    patch1 = next(r for r in replies_of(review_of("09-v1-v2-thread.mbox")) if r.patch == 1)
    wire = mail.as_bytes(patch1.msg)
    assert b"To: Adam =?utf-8?q?Nov=C3=A1k?= <a.novak@example.cz>" in wire
    assert parse(wire)["To"] == "Adam Novák <a.novak@example.cz>"


def test_clean_series_sends_nothing_unless_asked():
    review = review_of("08-not-kvm.mbox")
    assert replies_of(review) == []
    (only,) = replies_of(review, reply_when_clean=True)
    assert "found no CPUID or userspace-ABI concerns" in only.msg.get_content()
    assert only.msg["In-Reply-To"] == "<20241105052100.642001-1-wen.zhao@example.com>"


HOSTILE = [
    # a real CR LF in the raw header: the input itself then carries a Bcc
    (b"Subject: [PATCH] KVM: x86: Clear AVX-512",
     b"Subject: [PATCH] KVM: x86: Clear AVX-512\r\nBcc: x@y.example"),
    # an encoded CR LF that decodes into the subject
    (b"Subject: [PATCH] KVM: x86: Clear AVX-512",
     b"Subject: =?utf-8?q?[PATCH]_KVM:_x86:_Clear_AVX-512=0D=0ABcc:_x@y.example?="),
    # a hostile display name
    (b"From: Rasmus Lindqvist", b"From: =?utf-8?q?Rasmus=0D=0ABcc:_x@y.example?="),
]


@pytest.mark.parametrize("old, new", HOSTILE)
def test_no_header_injection(old, new):
    raw = (SAMPLES / "02-add-adjustment.mbox").read_bytes()
    assert old in raw
    out = replies_of(review_of("", raw.replace(old, new, 1)))
    assert out
    for reply in out:
        wire = mail.as_bytes(reply.msg, linesep="\r\n")
        head = wire.split(b"\r\n\r\n", 1)[0]
        assert b"\nBcc:" not in head and b"\rBcc:" not in head
        assert all(not line.lower().startswith(b"bcc") for line in head.split(b"\r\n"))
        assert parse(wire)["Bcc"] is None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_send_to_a_real_smtp_server():
    from aiosmtpd.controller import Controller

    class Keep:
        def __init__(self):
            self.got = []

        async def handle_DATA(self, server, session, envelope):
            self.got.append((envelope.mail_from, list(envelope.rcpt_tos), envelope.content))
            return "250 OK"

    handler = Keep()
    port = _free_port()
    controller = Controller(handler, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        out = replies_of(review_of("02-add-adjustment.mbox"))
        settings = deliver.SmtpSettings(server="127.0.0.1", port=port)
        sent = deliver.send(out, settings, dry_run=False)
        deadline = time.monotonic() + 5
        while len(handler.got) < len(out) and time.monotonic() < deadline:
            time.sleep(0.01)
    finally:
        controller.stop()
    assert sent == ["<kvm-review-test-1@example.org>"]
    (mail_from, rcpts, content), = handler.got
    assert mail_from == "reviewer@example.org"
    assert rcpts == ["r.lindqvist@example.org", "seanjc@google.com", "pbonzini@redhat.com",
                     "kvm@vger.kernel.org", "linux-kernel@vger.kernel.org"]
    assert content == mail.as_bytes(out[0].msg, linesep="\r\n")
    received = parse(content)
    assert received["In-Reply-To"] == "<20241119130352.88213-1-r.lindqvist@example.org>"
    assert received["Subject"] == ("Re: [PATCH] KVM: x86: Clear AVX-512 in guest CPUID when XCR0 can't "
                                   "enable AVX-512 state")


class Unreliable:
    """An aiosmtpd handler that fails at one step: "data" takes the mail and
    hangs up before answering, "rcpt" hangs up at RCPT, "refuse" answers
    554 to the mail, "quit" takes the mail and answers QUIT with 421, "stall"
    takes the mail and answers after the client's timeout."""

    def __init__(self, how: str):
        self.how, self.got = how, []

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        if self.how == "rcpt":
            server.transport.close()
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):
        if self.how == "refuse":
            return "554 5.7.1 not today"
        self.got.append(envelope.content)
        if self.how == "data":
            server.transport.close()
        if self.how == "stall":
            await asyncio.sleep(2)
        return "250 OK"

    async def handle_QUIT(self, server, session, envelope):
        return "421 4.3.2 going down" if self.how == "quit" else "221 Bye"


@pytest.mark.parametrize("how, error, maybe_sent", [
    ("data", "SMTP 127.0.0.1:{port}: SMTPServerDisconnected: Connection unexpectedly closed: the connection was "
             "lost after <kvm-review-test-1@example.org> was sent, it may have been delivered", True),
    ("stall", "SMTP 127.0.0.1:{port}: SMTPServerDisconnected: Connection unexpectedly closed: timed out: "
              "the connection was lost after "
              "<kvm-review-test-1@example.org> was sent, it may have been delivered", True),
    ("rcpt", "SMTP 127.0.0.1:{port}: SMTPServerDisconnected: Connection unexpectedly closed", False),
    ("refuse", "SMTP 127.0.0.1:{port}: SMTPDataError: (554, b'5.7.1 not today')", False),
    ("quit", None, False),
])
def test_a_lost_answer_after_the_mail_went_out_is_maybe_sent(how, error, maybe_sent):
    """Only a failure after the mail's last line can mean it was taken: that
    one is MaybeSent (the bot never resends it by itself); the others were
    answered or cut before the mail, so they were not sent; a failing QUIT
    after a 250 is no failure."""
    from aiosmtpd.controller import Controller

    from reviewer.errors import InputError, MaybeSent

    handler = Unreliable(how)
    port = _free_port()
    controller = Controller(handler, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        out = replies_of(review_of("02-add-adjustment.mbox"))
        settings = deliver.SmtpSettings(server="127.0.0.1", port=port, timeout=1 if how == "stall" else 5)
        if error is None:
            assert deliver.send(out, settings, dry_run=False) == ["<kvm-review-test-1@example.org>"]
        else:
            with pytest.raises(InputError) as info:
                deliver.send(out, settings, dry_run=False)
            assert str(info.value) == error.format(port=port)
            assert isinstance(info.value, MaybeSent) is maybe_sent
    finally:
        controller.stop()
    assert len(handler.got) == (0 if how in ("rcpt", "refuse") else 1)


def test_dry_run_prints_and_never_shows_the_password(capsys):
    out = replies_of(review_of("02-add-adjustment.mbox"))
    settings = deliver.SmtpSettings(server="127.0.0.1", port=1, user="me", password="s3cret-pw")
    deliver.send(out, settings, dry_run=True)
    err = capsys.readouterr().err
    assert err.startswith("dry run: would send <kvm-review-test-1@example.org> to r.lindqvist@example.org")
    assert "s3cret-pw" not in err
    with pytest.raises(Exception) as info:
        deliver.send(out, settings, dry_run=False)
    assert "s3cret-pw" not in str(info.value)


def test_user_templates_override_blocks_in_a_sandbox(tmp_path):
    (tmp_path / "footer.txt.j2").write_text("-- \nreviewed by a bot\n")
    out = replies_of(review_of("02-add-adjustment.mbox"), templates=str(tmp_path))
    body = out[0].msg.get_content()
    assert body.endswith("-- \nreviewed by a bot\n")
    assert "> +\t\tcpuid_entry_clear(best, X86_FEATURE_AVX512F);" in body  # ours filled the gaps
    (tmp_path / "footer.txt.j2").write_text("{{ ''.__class__.__mro__[1].__subclasses__() }}\n")
    from reviewer.errors import InputError
    with pytest.raises(InputError, match="template patch_reply.txt.j2: SecurityError"):
        replies_of(review_of("02-add-adjustment.mbox"), templates=str(tmp_path))
