"""kvm-review: review KVM x86 patch series for CPUID and userspace-ABI changes."""

__version__ = "0.1.0"
