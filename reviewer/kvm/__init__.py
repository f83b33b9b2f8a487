"""What kvm-review knows of KVM x86 C code, one layer under the rules."""
