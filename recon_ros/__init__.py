"""recon_ros: multi-camera 3D reconstruction for ROS 2 (MV-DUSt3R+ poses, DiffMVS depth)."""

import os

__version__ = "0.1.0"

# torch's CPU wheels use GNU OpenMP, whose idle threads spin 300 000 iterations before sleeping. On a
# robot computer the cores are shared with other nodes, and spinning threads then take the CPU from the
# threads doing the work: one plane-sweep view (320x240, 2 threads, 2-core VM) took 0.89 s beside one
# busy process with that default, 0.50 s with a 1000-iteration spin, and 0.27 vs 0.28 s on the idle
# machine (OMP_WAIT_POLICY=PASSIVE: 0.39 s loaded but 0.49 s idle; benchmarks/bench_omp_spin.py,
# results/omp_spin_cpu.json). Set before torch loads libgomp; a value the user set (GOMP_SPINCOUNT or
# OMP_WAIT_POLICY) wins.
if "GOMP_SPINCOUNT" not in os.environ and "OMP_WAIT_POLICY" not in os.environ:
    os.environ["GOMP_SPINCOUNT"] = "1000"
