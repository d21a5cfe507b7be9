"""Numba kernels: sequential-recombination clustering, N-subjettiness, ECFs, Lund trees, images.

Every kernel walks all jets of a batch inside compiled code (flat constituent arrays plus
``offsets``); there is no per-jet Python loop. Coordinates inside a jet are *local*: rapidity
and azimuth relative to the jet axis (phi wrapped once), so distances never need wrapping again.

Clustering (one implementation, ``clustering._cluster``, for the kt pass of N-subjettiness and
the C/A pass of soft drop and Lund trees) follows the usual pairwise algorithm with
nearest-neighbour caching (O(n^2) per jet): d_ij = min(kt_i^2p, kt_j^2p) dR_ij^2 / R^2, no beam
distance (every jet is clustered into one tree), E-scheme recombination, rapidity-azimuth
distances.

Modules by concern: ``common`` (JIT options, rapidity, phi wrapping, loading a jet),
``clustering`` (kt / C-A clustering), ``shapes`` (observables), ``lund`` (Lund trees),
``clouds`` (point clouds), ``images`` (jet images). The public kernels are re-exported here.
"""

from __future__ import annotations

from darkshower.represent.kernels.clouds import point_cloud_kernel
from darkshower.represent.kernels.images import jet_image_kernel
from darkshower.represent.kernels.lund import lund_kernel
from darkshower.represent.kernels.shapes import N_OBS, OBS_COLUMNS, observables_kernel

__all__ = ["N_OBS", "OBS_COLUMNS", "jet_image_kernel", "lund_kernel", "observables_kernel", "point_cloud_kernel"]
