#include "policy/spectral_grouping.h"

#include <Eigen/Dense>
#include <algorithm>
#include <numeric>

namespace grace {

namespace {

// Orders members by the Fiedler vector of their normalised Laplacian.
std::vector<ExpertId> FiedlerOrder(const AffinityMatrix& affinity,
                                   std::span<const ExpertId> members) {
  const int m = static_cast<int>(members.size());
  Eigen::MatrixXd a(m, m);
  for (int i = 0; i < m; ++i) {
    for (int j = 0; j < m; ++j) a(i, j) = i == j ? 0.0 : affinity.at(members[i], members[j]);
  }
  const double scale = std::max(1e-12, a.maxCoeff());
  a /= scale;
  a.array() += 1e-6;  // keeps isolated experts connected, so the Laplacian stays well posed
  a.diagonal().setZero();
  Eigen::VectorXd inv_sqrt_degree = a.rowwise().sum().cwiseSqrt().cwiseInverse();
  Eigen::MatrixXd normalized = inv_sqrt_degree.asDiagonal() * a * inv_sqrt_degree.asDiagonal();
  // The Laplacian's second-smallest eigenvector is the normalised affinity's second-largest.
  Eigen::SelfAdjointEigenSolver<Eigen::MatrixXd> solver(normalized);
  Eigen::VectorXd fiedler = inv_sqrt_degree.cwiseProduct(solver.eigenvectors().col(m - 2));
  std::vector<int> idx(m);
  std::iota(idx.begin(), idx.end(), 0);
  std::stable_sort(idx.begin(), idx.end(), [&](int x, int y) { return fiedler(x) < fiedler(y); });
  std::vector<ExpertId> out(m);
  for (int i = 0; i < m; ++i) out[i] = members[idx[i]];
  return out;
}

double Cut(const AffinityMatrix& affinity, std::span<const ExpertId> left,
           std::span<const ExpertId> right) {
  double cut = 0;
  for (ExpertId a : left) {
    for (ExpertId b : right) cut += affinity.at(a, b);
  }
  return cut;
}

void Partition(const AffinityMatrix& affinity, std::span<const ExpertId> members,
               std::span<const int> sizes, int first_part, std::vector<int>* part_of_expert) {
  if (sizes.size() == 1 || members.size() <= 1) {
    for (ExpertId e : members) (*part_of_expert)[e] = first_part;
    return;
  }
  const size_t left_parts = sizes.size() / 2;
  const int left_size = std::accumulate(sizes.begin(), sizes.begin() + left_parts, 0);
  std::vector<ExpertId> order = FiedlerOrder(affinity, members);
  // Either end of the order may hold the left side; keep the smaller cut.
  std::vector<ExpertId> low(order.begin(), order.begin() + left_size);
  std::vector<ExpertId> high(order.begin() + left_size, order.end());
  std::vector<ExpertId> low2(order.end() - left_size, order.end());
  std::vector<ExpertId> high2(order.begin(), order.end() - left_size);
  if (Cut(affinity, low2, high2) < Cut(affinity, low, high)) {
    low.swap(low2);
    high.swap(high2);
  }
  Partition(affinity, low, sizes.first(left_parts), first_part, part_of_expert);
  Partition(affinity, high, sizes.subspan(left_parts), first_part + static_cast<int>(left_parts),
            part_of_expert);
}

}  // namespace

std::vector<int> SpectralPartition(const AffinityMatrix& affinity,
                                   std::span<const ExpertId> members, std::span<const int> sizes) {
  std::vector<int> part_of_expert(affinity.num_experts(), -1);
  Partition(affinity, members, sizes, 0, &part_of_expert);
  std::vector<int> out(members.size());
  for (size_t i = 0; i < members.size(); ++i) out[i] = part_of_expert[members[i]];
  return out;
}

void ImproveBySwaps(const AffinityMatrix& affinity, std::vector<int>* part, int max_passes) {
  const int experts = affinity.num_experts();
  std::vector<int>& p = *part;
  int parts = 0;
  for (int x : p) parts = std::max(parts, x + 1);
  // gain_to[e][q]: affinity of e with the members of part q.
  std::vector<double> with(static_cast<size_t>(experts) * parts, 0.0);
  auto recompute = [&] {
    std::fill(with.begin(), with.end(), 0.0);
    for (ExpertId a = 0; a < experts; ++a) {
      for (ExpertId b = 0; b < experts; ++b) {
        if (a != b && p[b] >= 0) with[a * parts + p[b]] += affinity.at(a, b);
      }
    }
  };
  recompute();
  for (int pass = 0; pass < max_passes; ++pass) {
    bool improved = false;
    for (ExpertId a = 0; a < experts; ++a) {
      for (ExpertId b = a + 1; b < experts; ++b) {
        const int pa = p[a], pb = p[b];
        if (pa < 0 || pb < 0 || pa == pb) continue;
        const double gain = with[a * parts + pb] - with[a * parts + pa] + with[b * parts + pa] -
                            with[b * parts + pb] - 2 * affinity.at(a, b);
        if (gain <= 1e-9) continue;
        std::swap(p[a], p[b]);
        for (ExpertId x = 0; x < experts; ++x) {
          with[x * parts + pa] += affinity.at(x, b) * (x != b) - affinity.at(x, a) * (x != a);
          with[x * parts + pb] += affinity.at(x, a) * (x != a) - affinity.at(x, b) * (x != b);
        }
        improved = true;
      }
    }
    if (!improved) break;
  }
}

double AffinityInsideParts(const AffinityMatrix& affinity, std::span<const int> part) {
  double kept = 0;
  for (size_t a = 0; a < part.size(); ++a) {
    for (size_t b = a + 1; b < part.size(); ++b) {
      if (part[a] >= 0 && part[a] == part[b]) kept += affinity.at(a, b);
    }
  }
  return kept;
}

}  // namespace grace
