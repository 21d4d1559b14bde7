// Fused speech-token sampling on the CPU: repetition penalty, temperature, top-k, top-p, repetition-aware
// sampling (RAS) and a draw from given uniforms, in one pass per row without a full sort of the vocabulary.
// The exact semantics are the docstring of funaudiochat/drsr/ops/reference.py::sample; registered as
// funaudiochat::sample in drsr_ops.cpp.

#include "drsr_ops.h"

#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>

#include <algorithm>
#include <cmath>
#include <functional>
#include <limits>
#include <queue>
#include <utility>
#include <vector>

namespace funaudiochat {
namespace {

struct SampleParams {
  double temperature;
  int64_t top_k;
  double top_p;
  double penalty;
  int64_t ras_window;
  double ras_tau;
};

// Smallest score s* whose "mass of strictly higher scores" is < limit: a quickselect that partitions by
// score and descends by mass (expected O(n), no sort). items: (score, weight), permuted in place.
// above: mass of the tokens outside items that score above all of them.
double nucleus_threshold(std::vector<std::pair<double, double>>& items, double limit, double above) {
  size_t lo = 0, hi = items.size();
  // Invariant: above = mass of everything known to score above every item in [lo, hi), and above < limit.
  while (true) {
    const double a = items[lo].first, b = items[lo + (hi - lo) / 2].first, c = items[hi - 1].first;
    const double pivot = std::max(std::min(a, b), std::min(std::max(a, b), c));
    // Three-way partition: [lo, gt) > pivot, [gt, lt) == pivot, [lt, hi) < pivot.
    size_t gt = lo, i = lo, lt = hi;
    while (i < lt) {
      if (items[i].first > pivot) {
        std::swap(items[i++], items[gt++]);
      } else if (items[i].first < pivot) {
        std::swap(items[i], items[--lt]);
      } else {
        ++i;
      }
    }
    double greater = 0.0;
    for (size_t j = lo; j < gt; ++j) greater += items[j].second;
    if (gt > lo && above + greater >= limit) {
      hi = gt;
      continue;
    }
    double equal = 0.0;
    for (size_t j = gt; j < lt; ++j) equal += items[j].second;
    const double next_above = above + greater + equal;
    if (lt == hi || next_above >= limit) return pivot;
    above = next_above;
    lo = lt;
  }
}

// Smallest index whose running weight sum exceeds uniform * total, clamped to the last positive weight.
// weight(i) returns 0 for tokens that are not kept. Sums run sequentially in vocabulary order.
template <typename WeightFn>
int64_t inverse_cdf(int64_t vocab, double uniform, WeightFn weight, std::vector<double>& w) {
  double total = 0.0;
  int64_t last_positive = -1;
  for (int64_t i = 0; i < vocab; ++i) {
    w[i] = weight(i);
    total += w[i];
    if (w[i] > 0) last_positive = i;
  }
  const double target = uniform * total;
  double running = 0.0;
  for (int64_t i = 0; i < vocab; ++i) {
    running += w[i];
    if (running > target) return std::min(i, std::max<int64_t>(last_positive, 0));
  }
  return std::max<int64_t>(last_positive, 0);
}

// Top-p threshold over the candidates (s >= floor, weights w): buckets of width 1/32 in s - top (the last
// one open-ended) are walked by mass from the top to find the bucket holding the threshold; only that
// bucket's tokens go through nucleus_threshold.
double top_p_threshold(const std::vector<double>& s, const std::vector<double>& w, double floor, double top,
                       double top_p) {
  constexpr int kBuckets = 2048;
  constexpr double kPerUnit = 32.0;
  const int64_t vocab = static_cast<int64_t>(s.size());
  auto bucket_of = [&](double x) {
    const double d = (top - x) * kPerUnit;
    return d >= 0 && d < kBuckets - 1 ? static_cast<int>(d) : (d >= 0 ? kBuckets - 1 : 0);
  };
  std::vector<double> bucket_mass(kBuckets, 0.0);
  std::vector<int64_t> bucket_count(kBuckets, 0);
  double mass = 0.0;
  for (int64_t i = 0; i < vocab; ++i) {
    if (!(s[i] >= floor)) continue;
    const int b = bucket_of(s[i]);
    bucket_mass[b] += w[i];
    ++bucket_count[b];
    mass += w[i];
  }
  const double limit = top_p * mass;
  int boundary = -1;
  double above = 0.0, boundary_above = 0.0;
  for (int b = 0; b < kBuckets && above < limit; ++b) {
    if (bucket_count[b] == 0) continue;
    boundary = b;
    boundary_above = above;
    above += bucket_mass[b];
  }
  if (boundary < 0) return floor;  // only for NaN input
  std::vector<std::pair<double, double>> items;
  items.reserve(bucket_count[boundary]);
  for (int64_t i = 0; i < vocab; ++i) {
    if (s[i] >= floor && bucket_of(s[i]) == boundary) items.emplace_back(s[i], w[i]);
  }
  return nucleus_threshold(items, limit, boundary_above);
}

// The k-th largest score, duplicates counted: a size-k min-heap for small k, nth_element otherwise.
double kth_largest(const std::vector<double>& s, int64_t k) {
  if (k <= 256) {
    std::priority_queue<double, std::vector<double>, std::greater<double>> heap(s.begin(), s.begin() + k);
    for (size_t i = static_cast<size_t>(k); i < s.size(); ++i) {
      if (s[i] > heap.top()) {
        heap.pop();
        heap.push(s[i]);
      }
    }
    return heap.top();
  }
  std::vector<double> scratch(s);
  std::nth_element(scratch.begin(), scratch.begin() + (k - 1), scratch.end(), std::greater<double>());
  return scratch[k - 1];
}

// Returns the token, or -1 - (index of the bad history entry) / -1 - hist_len for a bad uniform: the caller
// raises, since exceptions should not leave the parallel region.
template <typename scalar_t, typename uniform_t>
int64_t sample_row(const scalar_t* logits, const int64_t* history, int64_t hist_len, const uniform_t* uniforms,
                   int64_t vocab, const SampleParams& p) {
  for (int64_t j = 0; j < hist_len; ++j) {
    if (history[j] >= vocab) return -1 - j;
  }
  const double uniform_draw = static_cast<double>(uniforms[0]), uniform_ras = static_cast<double>(uniforms[1]);
  if (!(uniform_draw >= 0 && uniform_draw < 1 && uniform_ras >= 0 && uniform_ras < 1)) return -1 - hist_len;

  std::vector<double> s(vocab);
  for (int64_t i = 0; i < vocab; ++i) s[i] = static_cast<double>(logits[i]);
  if (p.penalty != 1.0) {
    // Computed from the original logit, so a repeated id is penalised once.
    for (int64_t j = 0; j < hist_len; ++j) {
      const int64_t id = history[j];
      if (id < 0) continue;
      const double x = static_cast<double>(logits[id]);
      s[id] = x < 0 ? x * p.penalty : x / p.penalty;
    }
  }
  if (p.temperature <= 0) {
    int64_t best = 0;
    for (int64_t i = 1; i < vocab; ++i) {
      if (s[i] > s[best]) best = i;
    }
    return best;
  }
  double top = -std::numeric_limits<double>::infinity();
  for (int64_t i = 0; i < vocab; ++i) {
    s[i] /= p.temperature;
    top = std::max(top, s[i]);
  }

  // w[i] = exp(s[i] - top) for candidates, 0 for tokens already filtered out.
  std::vector<double> w(vocab);
  double threshold = -std::numeric_limits<double>::infinity();
  const bool top_k_on = p.top_k > 0 && p.top_k < vocab;
  if (top_k_on) threshold = kth_largest(s, p.top_k);
  for (int64_t i = 0; i < vocab; ++i) w[i] = s[i] >= threshold ? std::exp(s[i] - top) : 0.0;
  if (p.top_p < 1.0) threshold = top_p_threshold(s, w, threshold, top, p.top_p);
  std::vector<double> kept(vocab);
  int64_t token = inverse_cdf(
      vocab, uniform_draw, [&](int64_t i) { return s[i] >= threshold ? w[i] : 0.0; }, kept);

  if (p.ras_window > 0 && hist_len > 0) {
    int64_t seen = 0, repeats = 0;
    for (int64_t j = hist_len - 1; j >= 0 && seen < p.ras_window; --j) {
      if (history[j] < 0) continue;
      ++seen;
      repeats += history[j] == token;
    }
    if (static_cast<double>(repeats) >= static_cast<double>(p.ras_window) * p.ras_tau) {
      token = inverse_cdf(vocab, uniform_ras, [&](int64_t i) { return std::exp(s[i] - top); }, kept);
    }
  }
  return token;
}

}  // namespace

at::Tensor sample_cpu(const at::Tensor& logits, const at::Tensor& history, const at::Tensor& uniforms,
                      double temperature, int64_t top_k, double top_p, double repetition_penalty,
                      int64_t ras_window, double ras_tau) {
  TORCH_CHECK_VALUE(logits.dim() == 2 && logits.size(1) > 0, "logits must be [B, V] with V > 0");
  check_ids(history, "history");
  const int64_t batch = logits.size(0), vocab = logits.size(1), hist_len = history.size(1);
  TORCH_CHECK_VALUE(history.size(0) == batch, "history must be [B, H]");
  TORCH_CHECK_VALUE(uniforms.dim() == 2 && uniforms.size(0) == batch && uniforms.size(1) == 2,
                    "uniforms must be [B, 2]");
  TORCH_CHECK_VALUE(!std::isnan(temperature) && top_k >= 0 && top_p > 0 && top_p <= 1 &&
                        repetition_penalty > 0 && ras_window >= 0,
                    "invalid sampling settings");
  const SampleParams params{temperature, top_k, top_p, repetition_penalty, ras_window, ras_tau};
  auto logits_c = logits.contiguous();
  auto history_c = history.contiguous();
  auto uniforms_c = uniforms.contiguous();
  auto out = at::empty({batch}, logits.options().dtype(at::kLong));
  int64_t* tokens = out.mutable_data_ptr<int64_t>();
  const int64_t* hist = history_c.const_data_ptr<int64_t>();
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, logits.scalar_type(), "sample_cpu", [&] {
    using logit_t = scalar_t;
    const logit_t* rows = logits_c.const_data_ptr<logit_t>();
    AT_DISPATCH_FLOATING_TYPES(uniforms.scalar_type(), "sample_cpu_uniforms", [&] {
      const scalar_t* draws = uniforms_c.const_data_ptr<scalar_t>();
      at::parallel_for(0, batch, 1, [&](int64_t begin, int64_t end) {
        for (int64_t b = begin; b < end; ++b) {
          tokens[b] = sample_row<logit_t, scalar_t>(rows + b * vocab, hist + b * hist_len, hist_len,
                                                    draws + b * 2, vocab, params);
        }
      });
    });
  });
  for (int64_t b = 0; b < batch; ++b) {
    if (tokens[b] >= 0) continue;
    const int64_t entry = -1 - tokens[b];
    TORCH_CHECK_VALUE(entry == hist_len, "history must hold ids < V = ", vocab,
                      " (negative entries are padding), found ", hist[b * hist_len + entry], " in row ", b);
    TORCH_CHECK_VALUE(false, "uniforms must lie in [0, 1), row ", b, " is out of range");
  }
  return out;
}

}  // namespace funaudiochat
