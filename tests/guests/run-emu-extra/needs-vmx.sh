#!/bin/bash
# Runs run-guest.sh only on hosts whose KVM has VT-x/SVM: under PVM-style KVM (no vmx/svm flag)
# a plain guest's ring 3 cannot get back to ring 0 and its kernel mode cannot run SSE, so such a
# guest fails there for reasons outside vmkit.
# usage: needs-vmx.sh RUN-GUEST.SH RUN-GUEST-ARGS...
set -u
if ! grep -q -w -E 'vmx|svm' /proc/cpuinfo 2>/dev/null; then
    echo "SKIP: this host's KVM (no VT-x/SVM: PVM) cannot return from ring 3 to ring 0 or run SSE in guest kernel mode; QEMU behaves the same"
    exit 77
fi
exec "$@"
