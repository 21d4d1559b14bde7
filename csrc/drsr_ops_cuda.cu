// CUDA kernels of the fused DRSR ops (schemas and CPU kernels: drsr_ops.cpp; contract:
// funaudiochat/drsr/ops/reference.py).
//
// STATUS: passes tests/drsr/test_ops_cuda.py on an H200 (docs/kernels_on_gpu.md). The sampling kernel mirrors the CPU
// algorithm with block-parallel pieces: radix select (8 x 8-bit digits of an order-preserving key of the
// fp64 score) for the top-k threshold, the same digit walk weighted by probability mass for the top-p
// threshold, and a chunked scan for the inverse-CDF draw. Its fp64 sums run in another order than the
// CPU's (shared-memory atomics), so draws agree with the reference except at ulp-level boundaries.

#include <ATen/ATen.h>
#include <ATen/Dispatch.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <torch/library.h>

#include <cuda_runtime.h>

#include <climits>
#include <cmath>
#include <cstdint>

namespace funaudiochat {
namespace {

constexpr int kThreads = 256;

dim3 row_grid(int64_t rows, int64_t dim) {
  return dim3(static_cast<unsigned>(rows), static_cast<unsigned>((dim + kThreads - 1) / kThreads));
}

// ---------------------------------------------------------------------------------- group / ungroup

template <typename scalar_t>
__global__ void group_kernel(const int64_t* __restrict__ ids, const scalar_t* __restrict__ table,
                             const scalar_t* __restrict__ text, scalar_t* __restrict__ out, int64_t k,
                             int64_t dim, int64_t vocab) {
  const int64_t row = blockIdx.x;
  const int64_t d = static_cast<int64_t>(blockIdx.y) * blockDim.x + threadIdx.x;
  if (d >= dim) return;
  const int64_t* row_ids = ids + row * k;
  float sum = 0.0f;
  for (int64_t j = 0; j < k; ++j) {
    const int64_t id = row_ids[j];
    if (id < 0 || id >= vocab) {  // rejected in Python; never read out of bounds
      sum = nanf("");
      break;
    }
    sum += static_cast<float>(table[id * dim + d]);
  }
  const float mean = sum / static_cast<float>(k);
  out[row * dim + d] = text == nullptr
                           ? static_cast<scalar_t>(mean)
                           : static_cast<scalar_t>((static_cast<float>(text[row * dim + d]) + mean) / 2.0f);
}

template <typename scalar_t>
__global__ void scatter_kernel(const scalar_t* __restrict__ grad, const int64_t* __restrict__ ids,
                               float* __restrict__ acc, int64_t k, int64_t dim, int64_t vocab, float divisor) {
  const int64_t row = blockIdx.x;
  const int64_t d = static_cast<int64_t>(blockIdx.y) * blockDim.x + threadIdx.x;
  if (d >= dim) return;
  const float value = static_cast<float>(grad[row * dim + d]) / divisor;
  for (int64_t j = 0; j < k; ++j) {
    const int64_t id = ids[row * k + j];
    if (id >= 0 && id < vocab) atomicAdd(acc + id * dim + d, value);
  }
}

template <typename scalar_t>
__global__ void ungroup_kernel(const scalar_t* __restrict__ u, const int64_t* __restrict__ ids,
                               const scalar_t* __restrict__ table, scalar_t* __restrict__ out, int64_t dim,
                               int64_t vocab) {
  const int64_t row = blockIdx.x;
  const int64_t d = static_cast<int64_t>(blockIdx.y) * blockDim.x + threadIdx.x;
  if (d >= dim) return;
  const int64_t id = ids[row];
  const float emb = id >= 0 && id < vocab ? static_cast<float>(table[id * dim + d]) : nanf("");
  out[row * dim + d] = static_cast<scalar_t>(static_cast<float>(u[row * dim + d]) + emb);
}

// In place; ids were range-checked in Python (an id outside [0, V) still never reads out of bounds: NaN).
template <typename scalar_t>
__global__ void ungroup_inplace_kernel(scalar_t* __restrict__ u, const int64_t* __restrict__ ids,
                                       const scalar_t* __restrict__ table, int64_t dim, int64_t vocab) {
  const int64_t row = blockIdx.x;
  const int64_t d = static_cast<int64_t>(blockIdx.y) * blockDim.x + threadIdx.x;
  if (d >= dim) return;
  const int64_t id = ids[row];
  const float emb = id >= 0 && id < vocab ? static_cast<float>(table[id * dim + d]) : nanf("");
  u[row * dim + d] = static_cast<scalar_t>(static_cast<float>(u[row * dim + d]) + emb);
}

at::Tensor group_cuda(const at::Tensor& ids, const at::Tensor& table, int64_t group_size,
                      const std::optional<at::Tensor>& text) {
  TORCH_CHECK_VALUE(ids.scalar_type() == at::kLong && ids.dim() == 2 && table.dim() == 2, "ids [B, T], table [V, D]");
  TORCH_CHECK_VALUE(group_size > 0 && ids.size(1) % group_size == 0, "group_size must divide T");
  c10::cuda::CUDAGuard guard(table.device());
  const int64_t batch = ids.size(0), groups = ids.size(1) / group_size, vocab = table.size(0), dim = table.size(1);
  auto ids_c = ids.contiguous();
  auto table_c = table.contiguous();
  at::Tensor text_c;
  if (text.has_value()) {
    text_c = text->contiguous();
    TORCH_CHECK_VALUE(text_c.scalar_type() == table.scalar_type() && text_c.numel() == batch * groups * dim,
                      "text must be [B, T/k, D] with the table's dtype");
  }
  auto out = at::empty({batch, groups, dim}, table.options());
  if (out.numel() == 0) return out;
  auto stream = c10::cuda::getCurrentCUDAStream();
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, table.scalar_type(), "group_cuda", [&] {
    group_kernel<scalar_t><<<row_grid(batch * groups, dim), kThreads, 0, stream>>>(
        ids_c.const_data_ptr<int64_t>(), table_c.const_data_ptr<scalar_t>(),
        text.has_value() ? text_c.const_data_ptr<scalar_t>() : nullptr, out.mutable_data_ptr<scalar_t>(),
        group_size, dim, vocab);
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
  return out;
}

at::Tensor group_backward_cuda(const at::Tensor& grad, const at::Tensor& ids, int64_t num_embeddings,
                               int64_t group_size, double divisor) {
  TORCH_CHECK_VALUE(grad.dim() == 3 && ids.dim() == 2 && grad.size(1) * group_size == ids.size(1),
                    "grad must be [B, T/k, D] for ids [B, T]");
  c10::cuda::CUDAGuard guard(grad.device());
  const int64_t dim = grad.size(2);
  auto grad_c = grad.contiguous();
  auto ids_c = ids.contiguous();
  auto acc = at::zeros({num_embeddings, dim}, grad.options().dtype(at::kFloat));
  const int64_t rows = grad.size(0) * grad.size(1);
  if (rows > 0 && dim > 0) {
    auto stream = c10::cuda::getCurrentCUDAStream();
    AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, grad.scalar_type(), "group_backward_cuda", [&] {
      scatter_kernel<scalar_t><<<row_grid(rows, dim), kThreads, 0, stream>>>(
          grad_c.const_data_ptr<scalar_t>(), ids_c.const_data_ptr<int64_t>(), acc.mutable_data_ptr<float>(),
          group_size, dim, num_embeddings, static_cast<float>(divisor));
      C10_CUDA_KERNEL_LAUNCH_CHECK();
    });
  }
  return acc.scalar_type() == grad.scalar_type() ? acc : acc.to(grad.scalar_type());
}

at::Tensor ungroup_cuda(const at::Tensor& u, const at::Tensor& prev_ids, const at::Tensor& table,
                        int64_t group_size) {
  TORCH_CHECK_VALUE(u.dim() == 3 && table.dim() == 2 && prev_ids.dim() == 2 && u.scalar_type() == table.scalar_type(),
                    "u [B, L, k*D], prev_ids [B, L*k], table [V, D] of u's dtype");
  const int64_t batch = u.size(0), length = u.size(1), vocab = table.size(0), dim = table.size(1);
  TORCH_CHECK_VALUE(group_size > 0 && u.size(2) == group_size * dim && prev_ids.numel() == batch * length * group_size,
                    "u's last dim must be k*D and prev_ids [B, L*k]");
  c10::cuda::CUDAGuard guard(u.device());
  auto u_c = u.contiguous();
  auto ids_c = prev_ids.contiguous();
  auto table_c = table.contiguous();
  auto out = at::empty({batch, length * group_size, dim}, u.options());
  if (out.numel() == 0) return out;
  auto stream = c10::cuda::getCurrentCUDAStream();
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, u.scalar_type(), "ungroup_cuda", [&] {
    ungroup_kernel<scalar_t><<<row_grid(batch * length * group_size, dim), kThreads, 0, stream>>>(
        u_c.const_data_ptr<scalar_t>(), ids_c.const_data_ptr<int64_t>(), table_c.const_data_ptr<scalar_t>(),
        out.mutable_data_ptr<scalar_t>(), dim, vocab);
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
  return out;
}

at::Tensor& ungroup_inplace_cuda(at::Tensor& u, const at::Tensor& prev_ids, const at::Tensor& table,
                                 int64_t group_size) {
  TORCH_CHECK_VALUE(u.dim() == 3 && table.dim() == 2 && prev_ids.dim() == 2 && u.scalar_type() == table.scalar_type(),
                    "u [B, L, k*D], prev_ids [B, L*k], table [V, D] of u's dtype");
  TORCH_CHECK_VALUE(u.is_contiguous(), "u must be contiguous (ungroup_ writes into its storage)");
  const int64_t batch = u.size(0), length = u.size(1), vocab = table.size(0), dim = table.size(1);
  TORCH_CHECK_VALUE(group_size > 0 && u.size(2) == group_size * dim && prev_ids.numel() == batch * length * group_size,
                    "u's last dim must be k*D and prev_ids [B, L*k]");
  c10::cuda::CUDAGuard guard(u.device());
  const int64_t rows = batch * length * group_size;
  if (rows == 0 || dim == 0) return u;
  auto ids_c = prev_ids.contiguous();
  auto table_c = table.contiguous();
  auto stream = c10::cuda::getCurrentCUDAStream();
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, u.scalar_type(), "ungroup_inplace_cuda", [&] {
    ungroup_inplace_kernel<scalar_t><<<row_grid(rows, dim), kThreads, 0, stream>>>(
        u.mutable_data_ptr<scalar_t>(), ids_c.const_data_ptr<int64_t>(), table_c.const_data_ptr<scalar_t>(), dim,
        vocab);
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
  return u;
}

// --------------------------------------------------------------------------------------------- sample

constexpr uint64_t kSignBit = 0x8000000000000000ULL;

// Unsigned key whose order is the order of the doubles (-0.0 and +0.0 share one key).
__device__ __forceinline__ uint64_t order_key(double x) {
  if (x == 0.0) x = 0.0;
  const uint64_t bits = static_cast<uint64_t>(__double_as_longlong(x));
  return (bits & kSignBit) ? ~bits : (bits | kSignBit);
}

__device__ __forceinline__ double key_value(uint64_t key) {
  const uint64_t bits = (key & kSignBit) ? (key & ~kSignBit) : ~key;
  return __longlong_as_double(static_cast<long long>(bits));
}

struct SampleShared {
  double reduce_double[kThreads];
  long long reduce_index[kThreads];
  double chunk_prefix[kThreads];
  double bucket_mass[256];
  unsigned int bucket_count[256];
  int chosen_bucket;
  long long chosen_rank;
  double chosen_above;
  int redraw;
};

__device__ double block_sum(double value, SampleShared& sh) {
  sh.reduce_double[threadIdx.x] = value;
  __syncthreads();
  for (int stride = kThreads / 2; stride > 0; stride >>= 1) {
    if (threadIdx.x < stride) sh.reduce_double[threadIdx.x] += sh.reduce_double[threadIdx.x + stride];
    __syncthreads();
  }
  const double result = sh.reduce_double[0];
  __syncthreads();
  return result;
}

__device__ double block_max(double value, SampleShared& sh) {
  sh.reduce_double[threadIdx.x] = value;
  __syncthreads();
  for (int stride = kThreads / 2; stride > 0; stride >>= 1) {
    if (threadIdx.x < stride) {
      sh.reduce_double[threadIdx.x] = fmax(sh.reduce_double[threadIdx.x], sh.reduce_double[threadIdx.x + stride]);
    }
    __syncthreads();
  }
  const double result = sh.reduce_double[0];
  __syncthreads();
  return result;
}

// want_max: block max, else block min.
__device__ long long block_extreme_index(long long value, bool want_max, SampleShared& sh) {
  sh.reduce_index[threadIdx.x] = value;
  __syncthreads();
  for (int stride = kThreads / 2; stride > 0; stride >>= 1) {
    if (threadIdx.x < stride) {
      const long long a = sh.reduce_index[threadIdx.x], b = sh.reduce_index[threadIdx.x + stride];
      sh.reduce_index[threadIdx.x] = want_max ? (a > b ? a : b) : (a < b ? a : b);
    }
    __syncthreads();
  }
  const long long result = sh.reduce_index[0];
  __syncthreads();
  return result;
}

// Key of the k-th largest score (duplicates counted): one 8-bit digit per pass, most significant first.
__device__ uint64_t kth_largest_key(const double* s, int64_t vocab, int64_t k, SampleShared& sh) {
  uint64_t prefix = 0, mask = 0;
  long long remaining = k;
  for (int shift = 56; shift >= 0; shift -= 8) {
    for (int b = threadIdx.x; b < 256; b += kThreads) sh.bucket_count[b] = 0;
    __syncthreads();
    for (int64_t i = threadIdx.x; i < vocab; i += kThreads) {
      const uint64_t key = order_key(s[i]);
      if ((key & mask) == prefix) atomicAdd(&sh.bucket_count[(key >> shift) & 255], 1u);
    }
    __syncthreads();
    if (threadIdx.x == 0) {
      long long above = 0;
      int chosen = 0;
      for (int b = 255; b >= 0; --b) {
        if (above + sh.bucket_count[b] >= remaining) {
          chosen = b;
          break;
        }
        above += sh.bucket_count[b];
      }
      sh.chosen_bucket = chosen;
      sh.chosen_rank = remaining - above;
    }
    __syncthreads();
    prefix |= static_cast<uint64_t>(sh.chosen_bucket) << shift;
    mask |= 255ULL << shift;
    remaining = sh.chosen_rank;
    __syncthreads();
  }
  return prefix;
}

// Smallest candidate score whose mass of strictly higher candidates is < limit; candidates are the tokens
// with s >= floor, weighted by w. The same digit walk as kth_largest_key, descending by mass.
__device__ double nucleus_threshold(const double* s, const double* w, double floor, int64_t vocab, double limit,
                                    SampleShared& sh) {
  uint64_t prefix = 0, mask = 0;
  double above = 0.0;
  for (int shift = 56; shift >= 0; shift -= 8) {
    for (int b = threadIdx.x; b < 256; b += kThreads) {
      sh.bucket_count[b] = 0;
      sh.bucket_mass[b] = 0.0;
    }
    __syncthreads();
    for (int64_t i = threadIdx.x; i < vocab; i += kThreads) {
      if (!(s[i] >= floor)) continue;
      const uint64_t key = order_key(s[i]);
      if ((key & mask) != prefix) continue;
      const int bucket = static_cast<int>((key >> shift) & 255);
      atomicAdd(&sh.bucket_count[bucket], 1u);
      atomicAdd(&sh.bucket_mass[bucket], w[i]);
    }
    __syncthreads();
    if (threadIdx.x == 0) {
      double running = above;
      int chosen = -1;
      double chosen_above = above;
      for (int b = 255; b >= 0; --b) {
        if (sh.bucket_count[b] == 0) continue;
        if (!(running < limit)) break;
        chosen = b;
        chosen_above = running;
        running += sh.bucket_mass[b];
      }
      sh.chosen_bucket = chosen < 0 ? 255 : chosen;  // chosen < 0 only for NaN input
      sh.chosen_above = chosen_above;
    }
    __syncthreads();
    prefix |= static_cast<uint64_t>(sh.chosen_bucket) << shift;
    mask |= 255ULL << shift;
    above = sh.chosen_above;
    __syncthreads();
  }
  return key_value(prefix);
}

// Smallest index whose running weight sum (vocabulary order) exceeds uniform * total, clamped to the last
// positive weight. Weight: full ? exp(s - top) : (s >= floor ? w : 0).
__device__ long long inverse_cdf(const double* s, const double* w, double floor, bool full, double top,
                                 int64_t vocab, double uniform, SampleShared& sh) {
  const int64_t chunk = (vocab + kThreads - 1) / kThreads;
  const int64_t begin = static_cast<int64_t>(threadIdx.x) * chunk;
  const int64_t end = begin + chunk < vocab ? begin + chunk : vocab;
  auto weight = [&](int64_t i) { return full ? exp(s[i] - top) : (s[i] >= floor ? w[i] : 0.0); };
  double part = 0.0;
  long long last_positive = -1;
  for (int64_t i = begin; i < end; ++i) {
    const double x = weight(i);
    part += x;
    if (x > 0) last_positive = i;
  }
  sh.chunk_prefix[threadIdx.x] = part;
  __syncthreads();
  if (threadIdx.x == 0) {
    double running = 0.0;
    for (int t = 0; t < kThreads; ++t) {
      const double value = sh.chunk_prefix[t];
      sh.chunk_prefix[t] = running;
      running += value;
    }
    sh.chosen_above = running;  // total
  }
  __syncthreads();
  const double target = uniform * sh.chosen_above;
  double running = sh.chunk_prefix[threadIdx.x];
  long long found = LLONG_MAX;
  for (int64_t i = begin; i < end; ++i) {
    running += weight(i);
    if (running > target) {
      found = i;
      break;
    }
  }
  found = block_extreme_index(found, false, sh);
  last_positive = block_extreme_index(last_positive, true, sh);
  const long long clamp = last_positive > 0 ? last_positive : 0;
  return found < clamp ? found : clamp;
}

template <typename scalar_t, typename uniform_t>
__global__ void sample_kernel(const scalar_t* __restrict__ logits, const int64_t* __restrict__ history,
                              const uniform_t* __restrict__ uniforms, double* __restrict__ scores,
                              double* __restrict__ weights, int64_t* __restrict__ tokens, int64_t vocab,
                              int64_t hist_len, double temperature, int64_t top_k, double top_p, double penalty,
                              int64_t ras_window, double ras_tau) {
  __shared__ SampleShared sh;
  const int64_t row = blockIdx.x;
  const scalar_t* row_logits = logits + row * vocab;
  const int64_t* row_history = history + row * hist_len;
  double* s = scores + row * vocab;
  double* w = weights + row * vocab;

  for (int64_t i = threadIdx.x; i < vocab; i += kThreads) s[i] = static_cast<double>(row_logits[i]);
  __syncthreads();
  if (penalty != 1.0) {
    // Every writer of s[id] writes the same value (from the original logit): a benign race.
    for (int64_t j = threadIdx.x; j < hist_len; j += kThreads) {
      const int64_t id = row_history[j];
      if (id < 0 || id >= vocab) continue;
      const double x = static_cast<double>(row_logits[id]);
      s[id] = x < 0 ? x * penalty : x / penalty;
    }
    __syncthreads();
  }

  if (temperature <= 0) {
    double local = -INFINITY;
    for (int64_t i = threadIdx.x; i < vocab; i += kThreads) local = fmax(local, s[i]);
    const double best = block_max(local, sh);
    long long first = LLONG_MAX;
    for (int64_t i = threadIdx.x; i < vocab; i += kThreads) {
      if (s[i] == best) {
        first = i;
        break;
      }
    }
    first = block_extreme_index(first, false, sh);
    if (threadIdx.x == 0) tokens[row] = first == LLONG_MAX ? 0 : first;
    return;
  }

  double local = -INFINITY;
  for (int64_t i = threadIdx.x; i < vocab; i += kThreads) {
    s[i] /= temperature;
    local = fmax(local, s[i]);
  }
  const double top = block_max(local, sh);  // also orders the writes to s before the reads below

  double floor = -INFINITY;
  const bool top_k_on = top_k > 0 && top_k < vocab;
  if (top_k_on) floor = key_value(kth_largest_key(s, vocab, top_k, sh));
  double part = 0.0;
  for (int64_t i = threadIdx.x; i < vocab; i += kThreads) {
    w[i] = s[i] >= floor ? exp(s[i] - top) : 0.0;
    part += w[i];
  }
  const double mass = block_sum(part, sh);
  if (top_p < 1.0) floor = nucleus_threshold(s, w, floor, vocab, top_p * mass, sh);

  long long token = inverse_cdf(s, w, floor, false, top, vocab, static_cast<double>(uniforms[row * 2]), sh);

  if (ras_window > 0 && hist_len > 0) {
    if (threadIdx.x == 0) {
      int64_t seen = 0, repeats = 0;
      for (int64_t j = hist_len - 1; j >= 0 && seen < ras_window; --j) {
        if (row_history[j] < 0) continue;
        ++seen;
        repeats += row_history[j] == token;
      }
      sh.redraw = static_cast<double>(repeats) >= static_cast<double>(ras_window) * ras_tau;
    }
    __syncthreads();
    if (sh.redraw) {
      token = inverse_cdf(s, w, floor, true, top, vocab, static_cast<double>(uniforms[row * 2 + 1]), sh);
    }
  }
  if (threadIdx.x == 0) tokens[row] = token;
}

at::Tensor sample_cuda(const at::Tensor& logits, const at::Tensor& history, const at::Tensor& uniforms,
                       double temperature, int64_t top_k, double top_p, double repetition_penalty,
                       int64_t ras_window, double ras_tau) {
  TORCH_CHECK_VALUE(logits.dim() == 2 && logits.size(1) > 0, "logits must be [B, V] with V > 0");
  TORCH_CHECK_VALUE(history.scalar_type() == at::kLong && history.dim() == 2 && history.size(0) == logits.size(0),
                    "history must be an int64 [B, H] tensor");
  TORCH_CHECK_VALUE(uniforms.dim() == 2 && uniforms.size(0) == logits.size(0) && uniforms.size(1) == 2,
                    "uniforms must be [B, 2]");
  TORCH_CHECK_VALUE(!std::isnan(temperature) && top_k >= 0 && top_p > 0 && top_p <= 1 && repetition_penalty > 0 &&
                        ras_window >= 0,
                    "invalid sampling settings");
  c10::cuda::CUDAGuard guard(logits.device());
  const int64_t batch = logits.size(0), vocab = logits.size(1);
  auto logits_c = logits.contiguous();
  auto history_c = history.contiguous();
  auto uniforms_c = uniforms.contiguous();
  auto tokens = at::empty({batch}, logits.options().dtype(at::kLong));
  if (batch == 0) return tokens;
  auto workspace = at::empty({2, batch, vocab}, logits.options().dtype(at::kDouble));
  double* scores = workspace.mutable_data_ptr<double>();
  auto stream = c10::cuda::getCurrentCUDAStream();
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, logits.scalar_type(), "sample_cuda", [&] {
    using logit_t = scalar_t;
    AT_DISPATCH_FLOATING_TYPES(uniforms.scalar_type(), "sample_cuda_uniforms", [&] {
      sample_kernel<logit_t, scalar_t><<<static_cast<unsigned>(batch), kThreads, 0, stream>>>(
          logits_c.const_data_ptr<logit_t>(), history_c.const_data_ptr<int64_t>(),
          uniforms_c.const_data_ptr<scalar_t>(), scores, scores + batch * vocab, tokens.mutable_data_ptr<int64_t>(),
          vocab, history.size(1), temperature, top_k, top_p, repetition_penalty, ras_window, ras_tau);
      C10_CUDA_KERNEL_LAUNCH_CHECK();
    });
  });
  return tokens;
}

}  // namespace
}  // namespace funaudiochat

TORCH_LIBRARY_IMPL(funaudiochat, CUDA, m) {
  m.impl("group", &funaudiochat::group_cuda);
  m.impl("group_backward", &funaudiochat::group_backward_cuda);
  m.impl("ungroup", &funaudiochat::ungroup_cuda);
  m.impl("ungroup_", &funaudiochat::ungroup_inplace_cuda);
  m.impl("sample", &funaudiochat::sample_cuda);
}
