/*
 * hide_avx512.so: makes a process see a CPU without AVX-512, so that every engine in it (ONNX
 * Runtime's MLAS, PyTorch, numpy, cutpoint's pulp and gemm) picks its AVX2 kernels, as on an
 * AVX2-only machine. `compare_ort.py --hide-avx512` builds it and runs itself under it.
 *
 * How: a constructor turns on CPUID faulting for the thread (Linux `arch_prctl(ARCH_SET_CPUID,
 * 0)`, which threads created afterwards inherit), so that every `cpuid` instruction raises
 * SIGSEGV. The handler runs the real `cpuid` with faulting briefly off, clears the AVX-512
 * feature bits of leaf 7 from the answer, and resumes after the instruction. A CPU or kernel
 * without CPUID faulting (`cpuid_fault` in /proc/cpuinfo) makes the constructor say so and exit
 * with status 3, so that nothing is measured on the wrong path. Any other SIGSEGV is handed
 * back to the default action.
 *
 * Only the instruction set is changed: caches, clock and the width of the FMA units stay the
 * machine's own.
 *
 *     cc -O2 -shared -fPIC -o hide_avx512.so scripts/hide_avx512.c
 *     LD_PRELOAD=$PWD/hide_avx512.so python3 -c 'import numpy; numpy.show_runtime()'
 */
#define _GNU_SOURCE
#include <asm/prctl.h>
#include <signal.h>
#include <stdint.h>
#include <string.h>
#include <sys/syscall.h>
#include <ucontext.h>
#include <unistd.h>

/* Leaf 7, sub-leaf 0: EBX avx512f, dq, ifma, pf, er, cd, bw, vl. */
#define LEAF7_EBX_AVX512 \
    ((1u << 16) | (1u << 17) | (1u << 21) | (1u << 26) | (1u << 27) | (1u << 28) | (1u << 30) | \
     (1u << 31))
/* ECX avx512vbmi, vbmi2, vnni, bitalg, vpopcntdq. */
#define LEAF7_ECX_AVX512 ((1u << 1) | (1u << 6) | (1u << 11) | (1u << 12) | (1u << 14))
/* EDX avx512_4vnniw, 4fmaps, vp2intersect, fp16. */
#define LEAF7_EDX_AVX512 ((1u << 2) | (1u << 3) | (1u << 8) | (1u << 23))
/* Leaf 7, sub-leaf 1: EAX avx512_bf16. */
#define LEAF7_1_EAX_AVX512 (1u << 5)

static long cpuid_faulting(int off) { return syscall(SYS_arch_prctl, ARCH_SET_CPUID, off); }

static void on_fault(int sig, siginfo_t *info, void *context) {
    (void)info;
    greg_t *regs = ((ucontext_t *)context)->uc_mcontext.gregs;
    const uint8_t *ip = (const uint8_t *)regs[REG_RIP];
    if (ip[0] != 0x0f || ip[1] != 0xa2) {
        /* Not a cpuid: a real fault, which the default action reports when it recurs. */
        signal(sig, SIG_DFL);
        return;
    }
    uint32_t leaf = (uint32_t)regs[REG_RAX], sub = (uint32_t)regs[REG_RCX];
    uint32_t a = leaf, b, c = sub, d;
    cpuid_faulting(1);
    __asm__ volatile("cpuid" : "+a"(a), "=b"(b), "+c"(c), "=d"(d));
    cpuid_faulting(0);
    if (leaf == 7 && sub == 0) {
        b &= ~LEAF7_EBX_AVX512;
        c &= ~LEAF7_ECX_AVX512;
        d &= ~LEAF7_EDX_AVX512;
    } else if (leaf == 7 && sub == 1) {
        a &= ~LEAF7_1_EAX_AVX512;
    }
    regs[REG_RAX] = a;
    regs[REG_RBX] = b;
    regs[REG_RCX] = c;
    regs[REG_RDX] = d;
    regs[REG_RIP] += 2;
}

__attribute__((constructor)) static void hide_avx512(void) {
    struct sigaction action;
    memset(&action, 0, sizeof action);
    action.sa_sigaction = on_fault;
    action.sa_flags = SA_SIGINFO | SA_NODEFER;
    sigaction(SIGSEGV, &action, 0);
    if (cpuid_faulting(0) != 0) {
        static const char message[] =
            "hide_avx512.so: this CPU or kernel has no CPUID faulting (no cpuid_fault in "
            "/proc/cpuinfo), so AVX-512 cannot be hidden; run on such a machine, or on an "
            "AVX2-only one without --hide-avx512\n";
        ssize_t written = write(2, message, sizeof message - 1);
        (void)written;
        _exit(3);
    }
}
