// The collapsed sampler's hot part (python/lkr/train/collapsed.py, docs/training.md
// "Collapsed sampler"): low-rank up/downdates of a Cholesky factor and one Metropolis sweep
// over the feature blocks, float64, one chain per thread.
//
// State of a chain: the augmented factor S (P x R row-major, R = P + D) with
//   S[j][i] = L[i][j] (j <= i < P; never read below),  S[j][P + d] = (L^{-1} Y)[j][d],
// L the lower Cholesky factor of A = T I + G^T G. Row j of S is column j of L extended by
// b_d[j], so a column-by-column up/downdate streams through contiguous memory and carries
// b = L^{-1} Y along (the vectors' last D entries start at 0).
//
// chol_update: A <- A + sign sum_r x_r x_r^T for the k rows x_r of X (C x k x P), Y kept.
//   Rotations per column j, all k vectors while column j is in cache:
//     rho = sqrt(L_jj^2 + sign x_j^2), c = rho / L_jj, s = x_j / L_jj,
//     L_ij <- (L_ij + sign s x_i) / c,  x_i <- c x_i - s L_ij   (i > j).
//   ok[c] = 0 where a downdate would lose positive definiteness (S[c] is then partly
//   updated: rebuild it).
//
// collapsed_sweep: for each block a of `block` consecutive feature rows (G, Gp: C x n x P),
// the change of log p(Y | W) = -1/2 sum_d |b_d|^2 - D sum_j log L_jj when the block's rows
// G_a are replaced by Gp_a. With U = [G_a; Gp_a] (2k x P), Wm = U L^{-T} (forward
// substitution), c = Wm b (2k x D), E = I - Wo Wo^T, Bm = Wn Wo^T, F = I + Wn Wn^T
// (Wo, Wn the old and new halves of Wm; E is SPD, = (I + G_a A_{-a}^{-1} G_a^T)^{-1}):
//   delta = 1/2 (r^T Sch^{-1} r - c_o^T E^{-1} c_o) - D/2 (log det E + log det Sch),
//   Sch = F + Bm E^{-1} Bm^T,  r = c_n + Bm E^{-1} c_o
// (the determinant lemma and Woodbury for the rank-2k change with signs (-1, +1), the
// indefinite capacitance matrix eliminated block by block). Accepted when
// logu[c][a] < delta: update with Gp_a, downdate with G_a (in one column pass), and copy
// Gp_a into G. status[c] = 1 when a factor broke down (the chain's later blocks are
// skipped, delta NaN, and the block is not accepted; rebuild S[c] from G[c]).
// Cost per block O(k P^2) (solve 2 k P^2, accepted update 4 k P^2), memory O(k (P + D)).
// The results do not depend on the thread count (each chain is one thread's, in order).
#pragma once
#include <cstdint>

namespace lkr {

void chol_update(double* S, int64_t C, int64_t P, int64_t D, const double* X, int64_t k, int sign,
                 int nthreads, uint8_t* ok);

void collapsed_sweep(double* S, double* G, const double* Gp, const double* logu, int64_t C,
                     int64_t P, int64_t D, int64_t n, int64_t block, int nthreads,
                     uint8_t* accepted, double* delta, int32_t* status);

}  // namespace lkr
