"""Bot triage throughput: ``bench/run.py --bot``.

Builds a local public-inbox of 1,000+ messages - mostly patches and replies to
other subsystems (networking, filesystems, mm, DRM, sound, arm64 KVM, x86 core,
KVM selftests), plus a few dozen KVM x86 series (samples/*.mbox and series from
bench/generate.py, some with review replies) - serves it with
``public-inbox-httpd`` on 127.0.0.1 (tests/pilore.py, shared with the bot
tests), then times ``kvm-review bot run --once`` from cold state (fresh SQLite,
empty b4 cache) and counts the HTTP requests in the server's access log.
"""

from __future__ import annotations

import hashlib
import random
import re
import shutil
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
for p in (str(HERE), str(ROOT)):
    if p not in sys.path:
        sys.path.insert(0, p)

import generate  # noqa: E402

ENVELOPE = "From git@z Thu Jan  1 00:00:00 1970"
TARGET_S = 15.0

# subsystem: (subject prefix, list address, maintainer, [(file, function signature, line)])
SUBSYSTEMS = [
    ("net: ice", "netdev@vger.kernel.org", "Tony Nguyen <anthony.l.nguyen@intel.com>", [
        ("drivers/net/ethernet/intel/ice/ice_main.c", "static int ice_probe(struct pci_dev *pdev,", 5120),
        ("drivers/net/ethernet/intel/ice/ice_txrx.c",
         "int ice_clean_rx_irq(struct ice_rx_ring *rx_ring, int budget)", 1190)]),
    ("net: stmmac", "netdev@vger.kernel.org", "Jakub Kicinski <kuba@kernel.org>", [
        ("drivers/net/ethernet/stmicro/stmmac/stmmac_main.c",
         "static int stmmac_open(struct net_device *dev)", 3990)]),
    ("btrfs", "linux-btrfs@vger.kernel.org", "David Sterba <dsterba@suse.com>", [
        ("fs/btrfs/inode.c", "static int btrfs_setattr(struct mnt_idmap *idmap, struct dentry *dentry,", 5310),
        ("fs/btrfs/extent-tree.c", "int btrfs_free_extent(struct btrfs_trans_handle *trans, struct btrfs_ref *ref)",
         3470)]),
    ("ext4", "linux-ext4@vger.kernel.org", "Theodore Ts'o <tytso@mit.edu>", [
        ("fs/ext4/inode.c", "static int ext4_writepages(struct address_space *mapping,", 2860)]),
    ("mm", "linux-mm@kvack.org", "Andrew Morton <akpm@linux-foundation.org>", [
        ("mm/page_alloc.c", "struct page *__alloc_pages_noprof(gfp_t gfp, unsigned int order,", 4680),
        ("mm/vmscan.c", "static unsigned long shrink_folio_list(struct list_head *folio_list,", 1060)]),
    ("drm/i915", "intel-gfx@lists.freedesktop.org", "Jani Nikula <jani.nikula@linux.intel.com>", [
        ("drivers/gpu/drm/i915/display/intel_display.c",
         "static void intel_crtc_disable_noatomic(struct intel_crtc *crtc,", 880)]),
    ("ASoC: SOF", "linux-sound@vger.kernel.org", "Mark Brown <broonie@kernel.org>", [
        ("sound/soc/sof/ipc4-topology.c", "static int sof_ipc4_widget_setup(struct snd_sof_dev *sdev,", 2510)]),
    ("KVM: arm64", "kvmarm@lists.linux.dev", "Marc Zyngier <maz@kernel.org>", [
        ("arch/arm64/kvm/arm.c", "int kvm_arch_vcpu_ioctl_run(struct kvm_vcpu *vcpu)", 1110),
        ("arch/arm64/kvm/vgic/vgic-init.c", "int vgic_init(struct kvm *kvm)", 260)]),
    ("x86/cpu", "x86@kernel.org", "Borislav Petkov <bp@alien8.de>", [
        ("arch/x86/kernel/cpu/common.c", "static void identify_cpu(struct cpuinfo_x86 *c)", 1840),
        ("arch/x86/kernel/cpu/intel.c", "static void init_intel(struct cpuinfo_x86 *c)", 560)]),
    ("KVM: selftests", "kvm@vger.kernel.org", "Sean Christopherson <seanjc@google.com>", [
        ("tools/testing/selftests/kvm/x86/cpuid_test.c", "static void test_cpuid_40000000(struct kvm_vcpu *vcpu)",
         190)]),
    ("PCI", "linux-pci@vger.kernel.org", "Bjorn Helgaas <bhelgaas@google.com>", [
        ("drivers/pci/probe.c", "static void pci_configure_device(struct pci_dev *dev)", 2400)]),
    ("sched/fair", "linux-kernel@vger.kernel.org", "Peter Zijlstra <peterz@infradead.org>", [
        ("kernel/sched/fair.c", "static void update_curr(struct cfs_rq *cfs_rq)", 1170)]),
]
STATEMENTS = [
    "\tint ret;", "\tunsigned long flags;", "\tif (!dev)", "\t\treturn -ENODEV;", "\tspin_lock_irqsave(&lock, flags);",
    "\tspin_unlock_irqrestore(&lock, flags);", "\tret = setup_one(priv, idx);", "\tif (ret)", "\t\tgoto err_free;",
    "\tpriv->count++;", "\tWARN_ON_ONCE(!mutex_is_locked(&priv->lock));", "\tlist_add_tail(&e->node, &head);",
    "\tkfree(buf);", "\tbuf = kzalloc(size, GFP_KERNEL);", "\tif (!buf)", "\t\treturn -ENOMEM;", "\treturn 0;",
    "\tdev_dbg(dev, \"state %d\\n\", state);", "\tstate = READ_ONCE(priv->state);", "\tsmp_wmb();",
    "\tfor (i = 0; i < n; i++)", "\t\tpriv->slots[i] = NULL;", "\t/* caller holds the lock */", "",
]
NAMES = [("Ana Lima", "ana.lima@example.com"), ("Björn Sund", "bjorn.sund@example.se"),
         ("Chen Wei", "chen.wei@example.cn"), ("Dara Okafor", "dara.okafor@example.ng"),
         ("Elif Yilmaz", "elif.yilmaz@example.tr"), ("Farid Haddad", "farid.haddad@example.org"),
         ("Greta Vogel", "greta.vogel@example.de"), ("Hiro Sato", "hiro.sato@example.jp"),
         ("Ines Duarte", "ines.duarte@example.pt"), ("Jan Kowalski", "jan.kowalski@example.pl")]
VERBS = ["Fix a use-after-free in", "Drop a redundant check in", "Handle -EPROBE_DEFER in",
         "Avoid a NULL dereference in", "Simplify error handling in", "Add a missing lock in",
         "Use kzalloc() in", "Remove dead code from", "Annotate a data race in", "Convert to guard() in"]
REPLIES = ["Looks good to me.", "Nice catch, thanks.", "Could you split this into two patches?",
           "This conflicts with what is queued in -next; please rebase.", "Applied, thanks!",
           "Why is the lock needed here? The caller already holds it."]


def _fn_name(sig: str) -> str:
    return re.search(r"(\w+)\(", sig).group(1)


def _hunks(rng: random.Random, path: str, sig: str, line: int) -> tuple[str, int, int]:
    """One file's diff with correct counts: (text, added, removed)."""
    body = [" " + rng.choice(STATEMENTS) for _ in range(3)]
    for _ in range(rng.randint(1, 4)):
        k = rng.randint(1, 3)
        if rng.random() < 0.6:
            body += ["-" + rng.choice(STATEMENTS) for _ in range(k)]
        body += ["+" + rng.choice(STATEMENTS) for _ in range(k + rng.randint(0, 2))]
        body += [" " + rng.choice(STATEMENTS) for _ in range(rng.randint(1, 3))]
    added = sum(1 for ln in body if ln.startswith("+"))
    removed = sum(1 for ln in body if ln.startswith("-"))
    old = sum(1 for ln in body if ln[0] in " -")
    new = sum(1 for ln in body if ln[0] in " +")
    start = line + rng.randrange(3, 200)
    h = hashlib.sha1(f"{path}{rng.random()}".encode()).hexdigest()
    text = (f"diff --git a/{path} b/{path}\nindex {h[:12]}..{h[12:24]} 100644\n--- a/{path}\n+++ b/{path}\n"
            f"@@ -{start},{old} +{start},{new} @@ {sig}\n" + "\n".join(body) + "\n")
    return text, added, removed


def _headers(author, to: str, cc: str, subject: str, msgid: str, date: str, parent: str | None,
             refs: list[str]) -> str:
    name, addr = author
    out = [ENVELOPE, f"From: {name} <{addr}>", f"To: {to}", f"Cc: {cc}", f"Subject: {subject}",
           f"Date: {date}", f"Message-Id: <{msgid}>"]
    if parent:
        out += [f"In-Reply-To: <{parent}>", "References: " + " ".join(f"<{r}>" for r in refs)]
    out += ["MIME-Version: 1.0", 'Content-Type: text/plain; charset="utf-8"', "Content-Transfer-Encoding: 8bit", ""]
    return "\n".join(out) + "\n"


def _date(rng: random.Random) -> str:
    day = rng.randint(1, 28)
    return f"{['Mon', 'Tue', 'Wed', 'Thu', 'Fri', 'Sat', 'Sun'][day % 7]}, {day} Feb 2025 " \
           f"{rng.randint(0, 23):02d}:{rng.randint(0, 59):02d}:{rng.randint(0, 59):02d} +0000"


def other_series(rng: random.Random, n: int) -> list[str]:
    """One non-KVM-x86 series (cover letter when > 1 patch) and a few replies: messages as mboxo text."""
    prefix, lst, maint, files = rng.choice(SUBSYSTEMS)
    author = rng.choice(NAMES)
    rev = rng.choice((1, 1, 1, 2, 3))
    tag = "PATCH" if rev == 1 else f"PATCH v{rev}"
    stamp = f"202502{rng.randint(1, 28):02d}{rng.randint(0, 235959):06d}.{rng.randint(1000, 999999)}"
    ids = [f"{stamp}-{i}-{author[1]}" for i in range(n + 1)]
    to, cc = maint, f"{lst}, linux-kernel@vger.kernel.org"
    out, titles = [], []
    width = len(str(n))
    for i in range(1, n + 1):
        path, sig, line = rng.choice(files)
        title = f"{prefix}: {rng.choice(VERBS)} {_fn_name(sig)}()"
        titles.append(title)
        diff, a, d = _hunks(rng, path, sig, line)
        counter = f" {i:0{width}d}/{n}" if n > 1 else ""
        changelog = textwrap.fill(f"{title.split(': ')[-1]}: the error path can run after the object is gone, "
                                  "as seen with KASAN on a debug build. Take the reference earlier.", 72)
        body = (changelog + f"\n\nFixes: {hashlib.sha1(ids[i].encode()).hexdigest()[:12]} (\"{prefix}: rework\")\n"
                f"Signed-off-by: {author[0]} <{author[1]}>\n---\n {path} | {a + d} {'+' * a}{'-' * d}\n"
                f" 1 file changed, {a} insertions(+), {d} deletions(-)\n\n{diff}-- \n2.47.1\n")
        parent = ids[0] if n > 1 else None
        out.append(_headers(author, to, cc, f"[{tag}{counter}] {title}", ids[i], _date(rng), parent,
                            [ids[0]]) + body)
    if n > 1:
        cover = (f"This series fixes {n} issues found with KASAN and lockdep in {prefix}.\n\n"
                 f"{author[0]} ({n}):\n" + "".join(f"  {t}\n" for t in titles) + "\n-- \n2.47.1\n")
        out.insert(0, _headers(author, to, cc, f"[{tag} {0:0{width}d}/{n}] {prefix}: assorted fixes", ids[0],
                               _date(rng), None, []) + cover)
    posted = len(out)
    for j in range(rng.choice((0, 0, 1, 1, 2, 3))):
        target = rng.randrange(posted)
        subj = re.search(r"^Subject: (.*)$", out[target], re.M).group(1)
        pid = re.search(r"^Message-Id: <(.*)>$", out[target], re.M).group(1)
        replier = rng.choice(NAMES + [(maint.split(" <")[0], maint.split("<")[1].rstrip(">"))])
        quoted = "\n".join("> " + ln for ln in out[target].split("\n\n", 1)[1].splitlines()[:6])
        text = rng.choice(REPLIES)
        trailer = f"\nReviewed-by: {replier[0]} <{replier[1]}>\n" if rng.random() < 0.5 else ""
        out.append(_headers(replier, f"{author[0]} <{author[1]}>", cc, "Re: " + subj,
                            f"{stamp}.reply{j}-{replier[1]}", _date(rng), pid, [ids[0], pid])
                   + f"On {_date(rng)}, {author[0]} wrote:\n{quoted}\n\n{text}\n{trailer}")
    return out


def kvm_series(seed: int, patches: int, rng: random.Random) -> list[str]:
    """A generated KVM x86 series (bench/generate.py), the odd review reply added."""
    s = generate.series(patches, seed=seed, lines_per_patch=40)
    msgs = [ENVELOPE + "\n" + m if not m.startswith(ENVELOPE) else m for m in generate.split_patches(s.mbox)]
    if rng.random() < 0.5:
        target = msgs[rng.randrange(1, len(msgs))]
        subj = re.search(r"^Subject: (.*)$", target, re.M).group(1)
        mid = re.search(r"^Message-Id: <(.*)>$", target, re.M).group(1)
        root = re.search(r"^Message-Id: <(.*)>$", msgs[0], re.M).group(1)
        msgs.append(_headers(("Sean Christopherson", "seanjc@google.com"), "kvm@vger.kernel.org", "",
                             "Re: " + subj, f"reply-{seed}-{mid}", _date(rng), mid, [root, mid])
                    + "Please write changelogs in imperative mood.\n")
    return [m.rstrip("\n") + "\n" for m in msgs]


def build_mbox(total: int = 1100, kvm_generated: int = 24, seed: int = 7) -> tuple[bytes, dict]:
    rng = random.Random(seed)
    kvm: list[str] = []
    for path in sorted((ROOT / "samples").glob("*.mbox")):
        text = path.read_text(encoding="utf-8")
        kvm += [ENVELOPE + "\n" + m for m in text.split(ENVELOPE + "\n") if m.strip()]
    sizes = [1, 2, 3, 4, 6, 8]
    for i in range(kvm_generated):
        kvm += kvm_series(100 + i, sizes[i % len(sizes)], rng)
    other: list[str] = []
    while len(kvm) + len(other) < total:
        other += other_series(rng, rng.choice((1, 1, 1, 2, 3, 4, 5, 8)))
    msgs = kvm + other
    rng.shuffle(msgs)
    # mboxo: a body line starting "From " would split the message
    data = "\n".join(re.sub(r"(?m)^(?!\A)From (?!git@z )", ">From ", m.rstrip("\n") + "\n") for m in msgs)
    return data.encode("utf-8"), {"messages": len(msgs), "kvm_messages": len(kvm), "other_messages": len(other),
                                  "kvm_generated_series": kvm_generated}


_LOG = re.compile(r'"(?P<method>[A-Z]+) (?P<path>\S+) HTTP/[\d.]+" (?P<status>\d{3})')


def requests_in(log: str) -> list[tuple[str, str, str]]:
    return [(m["method"], m["path"], m["status"]) for m in _LOG.finditer(log)]


def bot_config(work: Path, base: str) -> Path:
    cfg = work / "bot.toml"
    cfg.write_text(f"""[lore]
url = "{base}"
lists = ["kvm"]
window = ""
rate = 0
retries = 1
timeout = 30

[bot]
state = "{work / 'state' / 'bot.sqlite'}"
grace = 0

[policy]
dry_run = true

[identity]
from = "KVM Review Bot <kvm-bot@example.org>"

[delivery]
outbox = "{work / 'outbox'}"
""", encoding="utf-8")
    return cfg


def run(kvm_review: list[str], log, keep: bool = False, total: int = 1100, profile: str | None = None) -> dict:
    from tests.pilore import LoreServer

    for tool in ("public-inbox-init", "public-inbox-httpd"):
        if shutil.which(tool) is None:
            raise SystemExit(f"--bot needs public-inbox ({tool} not found): apt-get install public-inbox")
    work = Path(tempfile.mkdtemp(prefix="kvm-bench-bot-"))
    server = LoreServer(work / "lore")
    try:
        data, figures = build_mbox(total)
        t0 = time.perf_counter()
        server.init()
        server.import_mbox(data)
        figures["build_inbox_s"] = time.perf_counter() - t0
        log(f"built a public-inbox of {figures['messages']} messages ({figures['kvm_messages']} KVM x86) "
            f"in {figures['build_inbox_s']:.1f} s")
        server.start()
        access = server.access_log
        before = access.stat().st_size if access.exists() else 0
        home = work / "home"
        (home / ".cache").mkdir(parents=True)
        gitconfig = home / ".gitconfig"
        gitconfig.write_text("[user]\n\tname = Bench\n\temail = bench@example.org\n")
        env = dict(server.env, HOME=str(home), XDG_CACHE_HOME=str(home / ".cache"),
                   XDG_DATA_HOME=str(home / ".local/share"), XDG_CONFIG_HOME=str(home / ".config"),
                   XDG_STATE_HOME=str(home / ".local/state"), GIT_CONFIG_GLOBAL=str(gitconfig))
        cfg = bot_config(work, server.base)
        cmd = kvm_review + ["bot", "run", "--config", str(cfg), "--once"]
        if profile:
            cmd = [sys.executable, "-m", "pyinstrument", "-r", "text", "-o", profile, "-m", "reviewer",
                   "bot", "run", "--config", str(cfg), "--once"]
        log("running kvm-review bot run --once from cold state...")
        t0 = time.perf_counter()
        proc = subprocess.run(cmd, env=env, capture_output=True, text=True, cwd=ROOT)
        wall = time.perf_counter() - t0
        if proc.returncode != 0:
            raise SystemExit(f"bot exited {proc.returncode}: {proc.stderr.strip()[-1000:]}")
        time.sleep(0.1)  # the access log is written as each answer ends
        reqs = requests_in(access.read_text(errors="replace")[before:])
        polls = [r for r in reqs if "q=" in r[1]]
        fetches = [r for r in reqs if "q=" not in r[1]]
        st = subprocess.run(kvm_review + ["bot", "status", "--config", str(cfg)], env=env, capture_output=True,
                            text=True, cwd=ROOT).stdout
        m = re.search(r"(\d+) results, (\d+) new, (\d+) series to look at", proc.stderr)
        results, to_look = (int(m[1]), int(m[3])) if m else (0, 0)
        series: dict[str, int] = {}
        line = next((ln for ln in st.splitlines() if ln.startswith("series: ")), "series: none")
        for part in line[len("series: "):].split(", "):
            if " " in part:
                k, v = part.rsplit(" ", 1)
                series[k] = int(v)
        figures.update({
            "wall_s": wall, "search_results": results, "series_looked_at": to_look, "series": series,
            "replies": len(list((work / "outbox").glob("*.eml"))) if (work / "outbox").exists() else 0,
            "requests": len(reqs), "polls": len(polls), "fetches": len(fetches),
            "non_200": [r for r in reqs if r[2] != "200"],
            "requests_ok": len(fetches) <= to_look and len(reqs) == len(polls) + len(fetches),
            "target_s": TARGET_S, "time_ok": wall <= TARGET_S, "rate_limit": "off (rate = 0: a local server)",
            "profile": profile,
        })
        return figures
    finally:
        server.stop()
        if keep:
            log(f"kept {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)
