"""Realistic KVM x86 patch series, generated in-process (no kernel tree needed).

Every series is one mboxo mailbox as ``git format-patch --cover-letter`` plus
``git send-email`` would write it: a cover letter, then N patches threaded to it,
each with a changelog, trailers, a diffstat and a diff touching ``arch/x86/kvm/``.
Hunks have real-kernel shape: three lines of context, correct ``@@ -a,b +c,d @@``
counts and the ``diff=cpp`` function name after the second ``@@``. About one patch
in five carries an edit the rules flag (a CPUID adjustment added in
``kvm_vcpu_after_set_cpuid``, a new ``return -EINVAL`` in ``kvm_check_cpuid``);
the rest are clean refactors. Output is deterministic for a given (patches, seed).

``python bench/generate.py 500 -o /tmp/s.mbox`` writes one to look at.
"""

from __future__ import annotations

import argparse
import hashlib
import random
import textwrap
from dataclasses import dataclass

# (file, function, signature line as git prints it, first line number of the body)
FUNCTIONS = [
    ("arch/x86/kvm/cpuid.c", "kvm_check_cpuid", "static int kvm_check_cpuid(struct kvm_vcpu *vcpu)", 140),
    ("arch/x86/kvm/cpuid.c", "kvm_vcpu_after_set_cpuid",
     "void kvm_vcpu_after_set_cpuid(struct kvm_vcpu *vcpu)", 365),
    ("arch/x86/kvm/cpuid.c", "__do_cpuid_func",
     "static inline int __do_cpuid_func(struct kvm_cpuid_array *array, u32 function)", 980),
    ("arch/x86/kvm/cpuid.c", "kvm_set_cpu_caps", "void kvm_set_cpu_caps(void)", 690),
    ("arch/x86/kvm/x86.c", "kvm_arch_vcpu_load", "void kvm_arch_vcpu_load(struct kvm_vcpu *vcpu, int cpu)", 5010),
    ("arch/x86/kvm/x86.c", "vcpu_enter_guest", "static int vcpu_enter_guest(struct kvm_vcpu *vcpu)", 10640),
    ("arch/x86/kvm/x86.c", "kvm_set_msr_common",
     "int kvm_set_msr_common(struct kvm_vcpu *vcpu, struct msr_data *msr_info)", 3890),
    ("arch/x86/kvm/x86.c", "kvm_arch_hardware_enable", "int kvm_arch_hardware_enable(void)", 12420),
    ("arch/x86/kvm/lapic.c", "kvm_apic_set_state",
     "int kvm_apic_set_state(struct kvm_vcpu *vcpu, struct kvm_lapic_state *s)", 3010),
    ("arch/x86/kvm/lapic.c", "apic_timer_expired",
     "static void apic_timer_expired(struct kvm_lapic *apic, bool from_timer_fn)", 1920),
    ("arch/x86/kvm/mmu/mmu.c", "kvm_mmu_page_fault",
     "int noinline kvm_mmu_page_fault(struct kvm_vcpu *vcpu, gpa_t cr2_or_gpa, u64 error_code,", 5890),
    ("arch/x86/kvm/mmu/mmu.c", "direct_page_fault",
     "static int direct_page_fault(struct kvm_vcpu *vcpu, struct kvm_page_fault *fault)", 4540),
    ("arch/x86/kvm/mmu/tdp_mmu.c", "tdp_mmu_map_handle_target_level",
     "static int tdp_mmu_map_handle_target_level(struct kvm_vcpu *vcpu,", 1040),
    ("arch/x86/kvm/vmx/vmx.c", "vmx_vcpu_run",
     "static fastpath_t vmx_vcpu_run(struct kvm_vcpu *vcpu, bool force_immediate_exit)", 7330),
    ("arch/x86/kvm/vmx/vmx.c", "vmx_set_cr0", "void vmx_set_cr0(struct kvm_vcpu *vcpu, unsigned long cr0)", 3240),
    ("arch/x86/kvm/vmx/nested.c", "nested_vmx_run",
     "static int nested_vmx_run(struct kvm_vcpu *vcpu, bool launch)", 3600),
    ("arch/x86/kvm/svm/svm.c", "svm_vcpu_run",
     "static __no_kcsan fastpath_t svm_vcpu_run(struct kvm_vcpu *vcpu,", 4160),
    ("arch/x86/kvm/svm/svm.c", "svm_set_efer", "int svm_set_efer(struct kvm_vcpu *vcpu, u64 efer)", 300),
    ("arch/x86/kvm/svm/sev.c", "sev_launch_update_data",
     "static int sev_launch_update_data(struct kvm *kvm, struct kvm_sev_cmd *argp)", 620),
    ("arch/x86/kvm/hyperv.c", "kvm_hv_set_msr_common",
     "int kvm_hv_set_msr_common(struct kvm_vcpu *vcpu, u32 msr, u64 data, bool host)", 1760),
    ("arch/x86/kvm/emulate.c", "x86_emulate_insn",
     "int x86_emulate_insn(struct x86_emulate_ctxt *ctxt)", 5150),
    ("arch/x86/kvm/pmu.c", "kvm_pmu_refresh", "void kvm_pmu_refresh(struct kvm_vcpu *vcpu)", 760),
]
CHECK_CPUID = FUNCTIONS[0]
AFTER_SET_CPUID = FUNCTIONS[1]

# Statement lines of kernel shape, one level inside a function body.
STATEMENTS = [
    "\tstruct kvm_cpuid_entry2 *best;",
    "\tu64 data = msr_info->data;",
    "\tint r;",
    "\tbest = kvm_find_cpuid_entry(vcpu, 0x80000008);",
    "\tvcpu->arch.maxphyaddr = cpuid_query_maxphyaddr(vcpu);",
    "\tvcpu->arch.reserved_gpa_bits = kvm_vcpu_reserved_gpa_bits_raw(vcpu);",
    "\tkvm_pmu_refresh(vcpu);",
    "\tkvm_make_request(KVM_REQ_EVENT, vcpu);",
    "\tkvm_x86_call(vcpu_after_set_cpuid)(vcpu);",
    "\tvmx_segment_cache_clear(vmx);",
    "\tsvm->vmcb->save.efer = efer | EFER_SVME;",
    "\tvmcb_mark_dirty(svm->vmcb, VMCB_CR);",
    "\ttrace_kvm_cpuid(function, index, *eax, *ebx, *ecx, *edx, exact, used_max_basic);",
    "\tlockdep_assert_held(&kvm->mmu_lock);",
    "\tWARN_ON_ONCE(!is_guest_mode(vcpu));",
    "\tkvm_mmu_reset_context(vcpu);",
    "\tapic->lapic_timer.expired_tscdeadline = 0;",
    "\tctxt->eflags &= ~X86_EFLAGS_RF;",
    "\tpmu->nr_arch_gp_counters = min_t(int, eax.split.num_counters, kvm_pmu_cap.num_counters_gp);",
    "\tsev->handle = start.handle;",
    "\tvcpu->arch.cr0 = cr0;",
    "\tkvm_register_mark_available(vcpu, VCPU_EXREG_CR0);",
]
BLOCKS = [
    ["\tif (!kvm_cpu_cap_has(X86_FEATURE_XSAVES))", "\t\treturn 0;"],
    ["\tif (is_guest_mode(vcpu)) {", "\t\tnested_vmx_vmexit(vcpu, EXIT_REASON_TRIPLE_FAULT, 0, 0);",
     "\t\treturn 1;", "\t}"],
    ["\t/*", "\t * Refresh the cached MAXPHYADDR; the MMU depends on it, and userspace",
     "\t * may have changed CPUID.0x80000008 since the last KVM_RUN.", "\t */"],
    ["\tspin_lock(&kvm->mmu_lock);", "\tkvm_mmu_zap_all_fast(kvm);", "\tspin_unlock(&kvm->mmu_lock);"],
    ["\tfor (i = 0; i < nent; i++) {", "\t\te = &entries[i];",
     "\t\tif (e->function == function && e->index == index)", "\t\t\treturn e;", "\t}"],
    ["\tswitch (msr) {", "\tcase MSR_IA32_TSC:", "\t\tdata = kvm_read_l1_tsc(vcpu, rdtsc());", "\t\tbreak;",
     "\tdefault:", "\t\tbreak;", "\t}"],
]
# Edits the rules should flag: (function entry, added lines).
FLAGGED = [
    (AFTER_SET_CPUID, ["\tbest = kvm_find_cpuid_entry_index(vcpu, 7, 0);", "\tif (best)",
                       "\t\tbest->ecx &= ~feature_bit(LA57);"]),
    (CHECK_CPUID, ["\tbest = kvm_find_cpuid_entry(vcpu, 0x80000008);",
                   "\tif (best && (best->eax & 0xff) > 52)", "\t\treturn -EINVAL;"]),
]
AUTHORS = [("Priya Raman", "priya.raman@example.com"), ("Jonas Berg", "jonas.berg@example.org"),
           ("Mei Tanaka", "mei.tanaka@example.net")]
TOPICS = ["Drop a stale comment", "Use guard() for the MMU lock", "Refresh cached state",
          "Open code a single-use helper", "Move a check ahead of the fast path", "Tidy up error handling"]


@dataclass
class Series:
    mbox: str
    patches: int
    changed_lines: int  # added + removed lines over all patches
    flagged: int  # patches carrying an edit the rules flag


def _hunk(rng: random.Random, fn, extra: list[str] | None, budget: int) -> tuple[list[str], int, int, int]:
    """The lines of one hunk inside ``fn``: (lines, added, removed, changed lines)."""
    ctx = lambda: rng.choice(STATEMENTS)  # noqa: E731
    lines: list[str] = [" " + ctx() for _ in range(3)]
    added = removed = 0
    changed = 0
    if extra:
        lines += ["+" + s for s in extra]
        added += len(extra)
        changed += len(extra)
    while changed < budget:
        roll = rng.random()
        if roll < 0.35:  # replace statements
            k = rng.randint(1, 3)
            lines += ["-" + ctx() for _ in range(k)] + ["+" + ctx() for _ in range(k)]
            removed += k
            added += k
            changed += 2 * k
        elif roll < 0.75:  # add a block
            block = rng.choice(BLOCKS)
            lines += ["+" + s for s in block]
            added += len(block)
            changed += len(block)
        elif roll < 0.9:  # remove statements
            k = rng.randint(1, 3)
            lines += ["-" + ctx() for _ in range(k)]
            removed += k
            changed += k
        else:  # context between changes
            lines += [" " + ctx() for _ in range(rng.randint(1, 3))]
    lines += [" " + ctx() for _ in range(3)]
    return lines, added, removed, changed


def _blob(seed: str) -> str:
    return hashlib.sha1(seed.encode()).hexdigest()[:12]


def _patch_body(rng: random.Random, index: int, flagged_edit, lines_per_patch: int):
    """Diffstat + diff of one patch: (text, changed lines, subject)."""
    nfiles = rng.choice((1, 1, 1, 2, 2, 3))
    fns = rng.sample(FUNCTIONS, nfiles)
    if flagged_edit is not None and flagged_edit[0] not in fns:
        fns[0] = flagged_edit[0]
    by_file: dict[str, list] = {}
    for fn in fns:
        by_file.setdefault(fn[0], []).append(fn)
    per_file = max(4, lines_per_patch // len(by_file))
    diffs, stat, total = [], [], 0
    for path, file_fns in sorted(by_file.items()):
        raw, fadd, fdel = [], 0, 0
        nhunks = rng.randint(1, 4)
        for h in range(nhunks):
            fn = file_fns[h % len(file_fns)]
            extra = flagged_edit[1] if flagged_edit is not None and fn is flagged_edit[0] and h < len(file_fns) \
                else None
            body, a, d, c = _hunk(rng, fn, extra, per_file // nhunks)
            raw.append((fn, body))
            fadd, fdel, total = fadd + a, fdel + d, total + c
        raw.sort(key=lambda t: t[0][3])
        hunks, old_end, delta = [], 0, 0
        for fn, body in raw:  # increasing, non-overlapping positions; new = old + earlier hunks' growth
            old_len = sum(1 for ln in body if ln[0] in " -")
            new_len = sum(1 for ln in body if ln[0] in " +")
            start = max(fn[3] + rng.randrange(3, 120), old_end + 8)
            hunks.append(f"@@ -{start},{old_len} +{start + delta},{new_len} @@ {fn[2]}\n" + "\n".join(body))
            old_end, delta = start + old_len, delta + new_len - old_len
        diffs.append(f"diff --git a/{path} b/{path}\nindex {_blob(f'{index}{path}a')}..{_blob(f'{index}{path}b')}"
                     f" 100644\n--- a/{path}\n+++ b/{path}\n" + "\n".join(hunks))
        stat.append((path, fadd, fdel))
    width = max(len(p) for p, _, _ in stat)
    lines = [f" {p:<{width}} | {a + d:>3} {'+' * min(a, 40)}{'-' * min(d, 20)}" for p, a, d in stat]
    ins, dels = sum(a for _, a, _ in stat), sum(d for _, _, d in stat)
    lines.append(f" {len(stat)} file{'s' if len(stat) > 1 else ''} changed, {ins} insertions(+), {dels} deletions(-)")
    area = "x86" if stat[0][0].count("/") == 3 else stat[0][0].split("/")[3].upper()
    if area == "MMU":
        area = "x86/mmu"
    subject = f"KVM: {area}: {rng.choice(TOPICS)} in {fns[0][1]}()"
    return "\n".join(lines) + "\n\n" + "\n".join(diffs) + "\n", total, subject


def _headers(author, subject: str, msgid: str, date: str, reply_to: str | None) -> str:
    name, addr = author
    out = [
        "From git@z Thu Jan  1 00:00:00 1970",
        f"From: {name} <{addr}>",
        "To: Sean Christopherson <seanjc@google.com>,",
        "\tPaolo Bonzini <pbonzini@redhat.com>",
        "Cc: kvm@vger.kernel.org, linux-kernel@vger.kernel.org",
        f"Subject: {subject}",
        f"Date: {date}",
        f"Message-Id: <{msgid}>",
        "X-Mailer: git-send-email 2.43.0",
    ]
    if reply_to:
        out += [f"In-Reply-To: <{reply_to}>", f"References: <{reply_to}>"]
    out += ["MIME-Version: 1.0", 'Content-Type: text/plain; charset="utf-8"', "Content-Transfer-Encoding: 8bit", ""]
    return "\n".join(out) + "\n"


def series(patches: int, seed: int = 1, lines_per_patch: int = 100, flag_every: int = 5) -> Series:
    """A series of ``patches`` patches of about ``lines_per_patch`` changed lines each."""
    rng = random.Random(f"{seed}-{patches}")
    author = rng.choice(AUTHORS)
    stamp = 20250301120000 + seed
    ids = [f"{stamp}.{4242 + patches}-{i + 1}-{author[1]}" for i in range(patches + 1)]
    width = len(str(patches))
    parts, total, flagged, titles = [], 0, 0, []
    for i in range(1, patches + 1):
        edit = None
        if i % flag_every == 0:
            edit = FLAGGED[(i // flag_every) % len(FLAGGED)]
            flagged += 1
        body, changed, subject = _patch_body(rng, i, edit, lines_per_patch)
        total += changed
        titles.append(subject)
        changelog = (textwrap.fill(f"{subject.split(': ', 2)[-1]}, as the code around it changed and the old"
                                   " form no longer says what KVM does.  No functional change intended for"
                                   " well-behaved userspace.", 72) + "\n\n"
                     f"Signed-off-by: {author[0]} <{author[1]}>\n")
        date = f"Sat, 1 Mar 2025 12:{(i // 60) % 60:02d}:{i % 60:02d} +0000"
        parts.append(_headers(author, f"[PATCH {i:0{width}d}/{patches}] {subject}", ids[i], date, ids[0])
                     + changelog + "---\n" + body + "-- \n2.43.0\n")
    cover = (f"This series tidies up {patches} corners of KVM x86: CPUID, the MMU, VMX and SVM.\n"
             "Most patches are refactors; a few change what KVM does with userspace's CPUID.\n\n"
             f"{author[0]} ({patches}):\n" + "".join(f"  {t}\n" for t in titles) + "\n"
             "base-commit: 8d5322e54885b806999957db6b3410ef05b29083\n-- \n2.43.0\n")
    head = _headers(author, f"[PATCH {0:0{width}d}/{patches}] KVM: x86: Assorted cleanups", ids[0],
                    "Sat, 1 Mar 2025 12:00:00 +0000", None)
    return Series("\n".join([head + cover, *parts]), patches, total, flagged)


def split_patches(mbox: str) -> list[str]:
    """The messages of a generated mbox, without the mboxo ``From `` line (cover first)."""
    msgs = mbox.split("\nFrom git@z Thu Jan  1 00:00:00 1970\n")
    msgs[0] = msgs[0].split("\n", 1)[1]
    return msgs


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("patches", type=int)
    ap.add_argument("-o", "--output", required=True)
    ap.add_argument("--seed", type=int, default=1)
    args = ap.parse_args()
    s = series(args.patches, args.seed)
    with open(args.output, "w", encoding="utf-8") as fh:
        fh.write(s.mbox)
    print(f"{args.output}: {s.patches} patches, {s.changed_lines} changed lines, {s.flagged} flagged")


if __name__ == "__main__":
    main()
