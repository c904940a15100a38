"""The reproducible mode: one record, bit for bit, on every x86-64 CPU with AVX2.

Float32 kernels round by CPU: torch's own (ATen) kernels come in a DEFAULT,
an AVX2 and an AVX-512 build and each machine runs the widest it supports;
MKL (matrix products, LAPACK), oneDNN (convolutions) and numpy's OpenBLAS
and SIMD loops dispatch on the CPU too, and the same sum added in another
order rounds differently.  The mode takes both steps that make a run's
record the same on an AMD AVX2 and an Intel AVX-512 machine with the same
torch build and thread count:

1. **Training** runs the AVX2 code path of every library on every machine:
   :data:`SETTINGS` (environment variables the libraries read when they
   load, so they are set before torch is imported).
2. **Evaluation** (accuracies, the load curve, its shape, the trajectory)
   runs in float64 from operations whose result does not depend on any
   kernel: elementwise IEEE operations and sums in a fixed pairwise order
   (:mod:`dnn_spring.train._fixed_order`), never a BLAS product or a vendor LAPACK.

It is on when ``DNN_SPRING_REPRODUCIBLE=1`` is in the environment (``dnn-spring
train --reproducible`` and ``sweep --reproducible`` set it and re-execute the
command; a sweep's workers and Slurm tasks inherit it) and every record says
``reproducible`` true or false.  Importing :mod:`dnn_spring` with the variable
set, before torch, applies :data:`SETTINGS`; a process that loaded torch
without them is refused in one line (:func:`check`) when it trains.

What it does not promise: equal records across torch builds or thread counts
(both are in every record), on GPUs, on ARM or on an x86 CPU without AVX2
(refused), nor equal ``log_d_pinv32`` (the original code's float32
``torch.linalg.pinv``, a vendor LAPACK call by definition) or Hessian numbers
(float32 autograd products).
"""

from __future__ import annotations

import os
import sys

__all__ = ["ENV_FLAG", "SETTINGS", "enabled", "environment", "apply_before_torch", "check",
           "problem", "reexecute"]

#: The environment variable that turns the mode on ("1").
ENV_FLAG = "DNN_SPRING_REPRODUCIBLE"

#: What the mode pins, read by each library when it loads.
SETTINGS = {
    # ATen's vectorised kernels: the AVX2 build, not AVX-512 (a no-op on an AVX2 machine)
    "ATEN_CPU_CAPABILITY": "avx2",
    # MKL: its AVX2 code branch, fixed cache sizes and reduction order, aligned or not
    "MKL_CBWR": "AVX2,STRICT",
    "MKL_ENABLE_INSTRUCTIONS": "AVX2",
    # oneDNN, which runs the CNN's convolutions: no AVX-512 JIT kernels
    "ONEDNN_MAX_CPU_ISA": "AVX2",
    # numpy's OpenBLAS (the evaluation's small LAPACK calls, the shape fit): its AVX2
    # (Haswell) kernels, and one L2 size for its blocking (OpenBLAS changes kernels on
    # AVX-512 Zen 4 CPUs that report 1 MiB of L2)
    "OPENBLAS_CORETYPE": "Haswell",
    "OPENBLAS_L2_SIZE": "512",
    # numpy's own SIMD loops: AVX2 at most
    "NPY_DISABLE_CPU_FEATURES": "X86_V4 AVX512F AVX512CD AVX512_SKX AVX512_CLX AVX512_CNL "
                                "AVX512_ICL AVX512_SPR",
}

_TRUE = ("1", "true", "yes", "on")


def enabled(env=None) -> bool:
    """Is the mode asked for (``DNN_SPRING_REPRODUCIBLE`` is 1, true, yes or on)?"""
    env = os.environ if env is None else env
    return env.get(ENV_FLAG, "").strip().lower() in _TRUE


def environment(env=None) -> dict:
    """A copy of ``env`` (default ``os.environ``) with the mode on and :data:`SETTINGS` set."""
    out = dict(os.environ if env is None else env)
    out.update(SETTINGS)
    out[ENV_FLAG] = "1"
    return out


def apply_before_torch() -> None:
    """With the mode on and neither torch nor numpy loaded yet, put :data:`SETTINGS` in
    ``os.environ``.

    Called when :mod:`dnn_spring` is imported.  It overrides values already
    there (an ``ATEN_CPU_CAPABILITY=default`` as well as an ``avx512``).  Once
    either library is loaded the settings would come too late: they are left
    as they are, and :func:`check` refuses what is missing.
    """
    if enabled() and not {"torch", "numpy"} & set(sys.modules):
        os.environ.update(SETTINGS)


def problem() -> "str | None":
    """Why the mode, asked for, is not in effect in this process (None: it is, or is off)."""
    if not enabled():
        return None
    wrong = [name for name, value in SETTINGS.items() if os.environ.get(name) != value]
    if wrong:
        return (f"{ENV_FLAG}=1 needs {', '.join(wrong)} set before torch loads, and this process "
                f"loaded torch (or numpy) first: set {ENV_FLAG}=1 before Python starts, or import "
                f"dnn_spring before torch and numpy")
    import torch

    capability = str(torch.backends.cpu.get_cpu_capability())
    if capability != "AVX2":
        hint = ("this CPU has no AVX2" if capability in ("DEFAULT", "NO AVX")
                else "torch was loaded before ATEN_CPU_CAPABILITY=avx2 was set")
        return (f"the reproducible mode needs torch's AVX2 kernels on an x86-64 CPU, "
                f"got {capability} ({hint})")
    return None


def check() -> None:
    """Raise ``RuntimeError`` (one line) when the mode is asked for but not in effect."""
    message = problem()
    if message:
        raise RuntimeError(message)


def reexecute(command: str) -> None:
    """Make sure the command ``command`` (``"dnn-spring train"``) runs in the mode.

    The command line has loaded torch by the time it reads its flags, so a
    process started with ``--reproducible`` but without the mode's settings
    is started again, the same command with them (``os.execve``: this call
    then never returns).  A process that has them goes on, once :func:`check`
    finds them in effect.  Raises ``ValueError`` (one line) when the process
    was not started with ``--reproducible`` (the command was called from
    Python) or the mode cannot be in effect.
    """
    env = environment()
    ready = all(os.environ.get(name) == env[name] for name in (ENV_FLAG, *SETTINGS))
    if not ready:
        if "--reproducible" not in sys.argv:
            raise ValueError(f"{command} --reproducible needs its settings before torch loads: "
                             f"set {ENV_FLAG}=1 in this process's environment")
        argv = [sys.executable, *getattr(sys, "orig_argv", [sys.executable, *sys.argv])[1:]]
        sys.stdout.flush()
        sys.stderr.flush()
        os.execve(sys.executable, argv, env)
    message = problem()
    if message:
        raise ValueError(message)
