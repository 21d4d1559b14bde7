// Fused DRSR ops: schema registration (TORCH_LIBRARY "funaudiochat"), CPU kernels, and the Python module.
//
//   group(ids[B,T], table[V,D], k, text?[B,T/k,D])      -> [B,T/k,D]   mean of k embeddings (+ text average)
//   group_backward(grad[B,N,D], ids[B,N*k], V, k, div)  -> [V,D]       sum of grad/div over each id
//   ungroup(u[B,L,k*D], prev_ids[B,L*k], table[V,D], k) -> [B,L*k,D]   split rows + embedding add
//   ungroup_(u[B,L,k*D], prev_ids[B,L*k], table[V,D], k) -> u          the same, added into u's storage
//   sample(logits[B,V], history[B,H], uniforms[B,2], ...) -> int64[B] penalty, temperature, top-k, top-p, RAS
//                                                                     (its CPU kernel: drsr_sample.cpp)
//   qwen3_decode_one(embeds[B,1,D], weights, key_rooms, value_rooms, length, cos, sin, bias, ...) -> [B,1,D]
//                                     one position through a Qwen3 stack, caches written in place
//                                     (CPU only: drsr_decode.cpp; reference: drsr/fast_decode.py)
//   rows_linear(x[...,K], weight[N,K])  -> [...,N]  x @ weight.T for a few rows, split over threads by
//                                                   output row (CPU only: drsr_decode.cpp)
//
// The exact semantics are the docstrings of funaudiochat/drsr/ops/reference.py. Python checks shapes, dtypes
// and settings; these kernels check the values they read (ids, history, uniforms) and raise ValueError.
// CUDA kernels live in drsr_ops_cuda.cu (compiled only when nvcc is available).

#include <Python.h>

#include "drsr_ops.h"

#include <ATen/ATen.h>
#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>
#include <ATen/core/LegacyTypeDispatch.h>
#include <ATen/core/dispatch/Dispatcher.h>
#include <torch/csrc/autograd/custom_function.h>
#include <torch/library.h>

#if defined(__linux__)
#include <sys/mman.h>
#include <unistd.h>
#endif

#include <algorithm>
#include <cmath>
#include <functional>
#include <limits>
#include <queue>
#include <utility>
#include <vector>

namespace funaudiochat {

void check_ids(const at::Tensor& ids, const char* name) {
  TORCH_CHECK_VALUE(ids.scalar_type() == at::kLong && ids.dim() == 2, name, " must be an int64 [B, T] tensor");
}

namespace {

// Large fresh outputs come straight from mmap, and faulting them in 4 KiB pages costs about as much as the
// kernel itself: ask for transparent huge pages before the first write (a hint; failures are harmless).
void advise_huge_pages(const at::Tensor& fresh) {
#if defined(__linux__) && defined(MADV_HUGEPAGE)
  constexpr size_t kMinBytes = size_t{8} << 20;
  const size_t bytes = fresh.nbytes();
  if (bytes < kMinBytes) return;
  const uintptr_t page = static_cast<uintptr_t>(sysconf(_SC_PAGESIZE));
  const uintptr_t start = reinterpret_cast<uintptr_t>(fresh.data_ptr());
  const uintptr_t first = (start + page - 1) & ~(page - 1);
  const uintptr_t last = (start + bytes) & ~(page - 1);
  if (last > first) madvise(reinterpret_cast<void*>(first), last - first, MADV_HUGEPAGE);
#endif
}

// ------------------------------------------------------------------------------------- row helpers

// dst[d] += emb[d] in fp32, rounded once. The extension is built for the baseline ISA (SSE2 on x86-64), so
// the row loop is cloned for AVX2 / AVX-512 and picked at load time (GCC/Clang target_clones on x86-64).
template <typename scalar_t>
inline __attribute__((always_inline)) void add_row(scalar_t* __restrict dst, const scalar_t* __restrict emb,
                                                   int64_t dim) {
  for (int64_t d = 0; d < dim; ++d) {
    dst[d] = static_cast<scalar_t>(static_cast<float>(dst[d]) + static_cast<float>(emb[d]));
  }
}

// The next table row is a random jump the hardware prefetcher cannot predict: fetch it while adding this one.
inline __attribute__((always_inline)) void prefetch_row(const void* row, size_t bytes) {
  const char* p = static_cast<const char*>(row);
  for (size_t offset = 0; offset < bytes; offset += 64) __builtin_prefetch(p + offset);
}

#if defined(__x86_64__) && defined(__linux__) && (defined(__clang__) || defined(__GNUC__))
#define FUNAUDIOCHAT_TARGET_CLONES __attribute__((target_clones("avx512f", "avx2", "default")))
#else
#define FUNAUDIOCHAT_TARGET_CLONES
#endif

// ---------------------------------------------------------------------------------------------- group

// Groups [begin, end) of one column block [col, col + width): out = mean of the k table rows (summed in fp32
// in order j = 0..k-1, then divided by k), or (text + mean) / 2. The heads of the next group's rows are
// prefetched while this one is summed (random jumps the hardware prefetcher cannot predict). k = 5 (the
// model's) keeps the sum in registers; other k accumulate through a small L1-resident buffer.
template <typename scalar_t>
inline __attribute__((always_inline)) void group_span_impl(scalar_t* __restrict out, const scalar_t* __restrict text,
                                                           const scalar_t* __restrict table,
                                                           const int64_t* __restrict ids, int64_t begin,
                                                           int64_t end, int64_t k, int64_t dim, int64_t col,
                                                           int64_t width) {
  const float count = static_cast<float>(k);
  // Only the head of each next row: the k rows are read side by side, sequentially, which the hardware
  // prefetcher follows once started; prefetching whole rows measured slower (it floods the fill buffers).
  const size_t head = std::min<size_t>(static_cast<size_t>(width) * sizeof(scalar_t), 256);
  for (int64_t row = begin; row < end; ++row) {
    const int64_t* g = ids + row * k;
    if (row + 1 < end) {
      for (int64_t j = 0; j < k; ++j) prefetch_row(table + g[k + j] * dim + col, head);
    }
    scalar_t* __restrict dst = out + row * dim + col;
    const scalar_t* __restrict txt = text == nullptr ? nullptr : text + row * dim + col;
    if (k == 5) {
      const scalar_t* __restrict e0 = table + g[0] * dim + col;
      const scalar_t* __restrict e1 = table + g[1] * dim + col;
      const scalar_t* __restrict e2 = table + g[2] * dim + col;
      const scalar_t* __restrict e3 = table + g[3] * dim + col;
      const scalar_t* __restrict e4 = table + g[4] * dim + col;
      if (txt == nullptr) {
        for (int64_t d = 0; d < width; ++d) {
          float sum = static_cast<float>(e0[d]);
          sum += static_cast<float>(e1[d]);
          sum += static_cast<float>(e2[d]);
          sum += static_cast<float>(e3[d]);
          sum += static_cast<float>(e4[d]);
          dst[d] = static_cast<scalar_t>(sum / count);
        }
      } else {
        for (int64_t d = 0; d < width; ++d) {
          float sum = static_cast<float>(e0[d]);
          sum += static_cast<float>(e1[d]);
          sum += static_cast<float>(e2[d]);
          sum += static_cast<float>(e3[d]);
          sum += static_cast<float>(e4[d]);
          dst[d] = static_cast<scalar_t>((static_cast<float>(txt[d]) + sum / count) / 2.0f);
        }
      }
      continue;
    }
    constexpr int64_t kChunk = 256;
    float acc[kChunk];
    for (int64_t c = 0; c < width; c += kChunk) {
      const int64_t n = std::min(kChunk, width - c);
      const scalar_t* __restrict first = table + g[0] * dim + col + c;
      for (int64_t d = 0; d < n; ++d) acc[d] = static_cast<float>(first[d]);
      for (int64_t j = 1; j < k; ++j) {
        const scalar_t* __restrict emb = table + g[j] * dim + col + c;
        for (int64_t d = 0; d < n; ++d) acc[d] += static_cast<float>(emb[d]);
      }
      if (txt == nullptr) {
        for (int64_t d = 0; d < n; ++d) dst[c + d] = static_cast<scalar_t>(acc[d] / count);
      } else {
        for (int64_t d = 0; d < n; ++d) {
          dst[c + d] = static_cast<scalar_t>((static_cast<float>(txt[c + d]) + acc[d] / count) / 2.0f);
        }
      }
    }
  }
}

#define FUNAUDIOCHAT_GROUP_SPAN(scalar_t)                                                                      \
  FUNAUDIOCHAT_TARGET_CLONES void group_span(scalar_t* out, const scalar_t* text, const scalar_t* table,       \
                                             const int64_t* ids, int64_t begin, int64_t end, int64_t k,        \
                                             int64_t dim, int64_t col, int64_t width) {                        \
    group_span_impl(out, text, table, ids, begin, end, k, dim, col, width);                                    \
  }
FUNAUDIOCHAT_GROUP_SPAN(float)
FUNAUDIOCHAT_GROUP_SPAN(at::BFloat16)
FUNAUDIOCHAT_GROUP_SPAN(at::Half)
#undef FUNAUDIOCHAT_GROUP_SPAN

void group_span(double* out, const double* text, const double* table, const int64_t* ids, int64_t begin,
                int64_t end, int64_t k, int64_t dim, int64_t col, int64_t width) {
  for (int64_t row = begin; row < end; ++row) {
    for (int64_t d = col; d < col + width; ++d) {
      float sum = static_cast<float>(table[ids[row * k] * dim + d]);
      for (int64_t j = 1; j < k; ++j) sum += static_cast<float>(table[ids[row * k + j] * dim + d]);
      const float mean = sum / static_cast<float>(k);
      out[row * dim + d] = text == nullptr
                               ? static_cast<double>(mean)
                               : static_cast<double>((static_cast<float>(text[row * dim + d]) + mean) / 2.0f);
    }
  }
}

// Work items are (column block, group) pairs, block-major, so a thread's contiguous share is a run of groups
// per block. Columns are split only when there are too few groups to keep every thread streaming.
template <typename scalar_t>
void group_rows(const int64_t* __restrict ids, const scalar_t* __restrict table, const scalar_t* __restrict text,
                scalar_t* __restrict out, int64_t rows, int64_t k, int64_t dim) {
  if (rows == 0 || dim == 0) return;
  const int64_t threads = std::max(1, at::get_num_threads());
  constexpr int64_t kMinWidth = 256;
  int64_t blocks = 1;
  if (rows < 8 * threads) {
    blocks = std::min((8 * threads + rows - 1) / rows, std::max<int64_t>(1, dim / kMinWidth));
  }
  const int64_t width = (dim + blocks - 1) / blocks;
  const int64_t grain = std::max<int64_t>(1, std::min<int64_t>(rows, 4));
  at::parallel_for(0, rows * blocks, grain, [&](int64_t begin, int64_t end) {
    while (begin < end) {
      const int64_t block = begin / rows, row = begin % rows;
      const int64_t stop = std::min(end, (block + 1) * rows);
      const int64_t col = block * width, cols = std::min(width, dim - col);
      if (cols > 0) group_span(out, text, table, ids, row, row + (stop - begin), k, dim, col, cols);
      begin = stop;
    }
  });
}

at::Tensor group_cpu(const at::Tensor& ids, const at::Tensor& table, int64_t group_size,
                     const std::optional<at::Tensor>& text) {
  check_ids(ids, "ids");
  TORCH_CHECK_VALUE(table.dim() == 2, "table must be [V, D]");
  TORCH_CHECK_VALUE(group_size > 0 && ids.size(1) % group_size == 0, "group_size must divide T");
  const int64_t batch = ids.size(0), groups = ids.size(1) / group_size;
  const int64_t vocab = table.size(0), dim = table.size(1);
  auto ids_c = ids.contiguous();
  auto table_c = table.contiguous();
  at::Tensor text_c;
  if (text.has_value()) {
    text_c = text->contiguous();
    TORCH_CHECK_VALUE(text_c.scalar_type() == table.scalar_type() && text_c.dim() == 3 &&
                          text_c.size(0) == batch && text_c.size(1) == groups && text_c.size(2) == dim,
                      "text must be [B, T/k, D] with the table's dtype");
  }
  const int64_t* ids_p = ids_c.const_data_ptr<int64_t>();
  for (int64_t i = 0, n = ids_c.numel(); i < n; ++i) {
    TORCH_CHECK_VALUE(ids_p[i] >= 0 && ids_p[i] < vocab, "ids contains ", ids_p[i], ", outside [0, ", vocab, ")");
  }
  auto out = at::empty({batch, groups, dim}, table.options());
  advise_huge_pages(out);
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, table.scalar_type(), "group_cpu", [&] {
    group_rows<scalar_t>(ids_p, table_c.const_data_ptr<scalar_t>(),
                         text.has_value() ? text_c.const_data_ptr<scalar_t>() : nullptr,
                         out.mutable_data_ptr<scalar_t>(), batch * groups, group_size, dim);
  });
  return out;
}

// Scatter-add of grad/divisor into a dense fp32 [V, D] buffer. Threads own disjoint column ranges, so the
// result is deterministic and needs no atomics.
template <typename scalar_t>
void scatter_rows(const scalar_t* __restrict grad, const int64_t* __restrict ids, float* __restrict acc,
                  int64_t rows, int64_t k, int64_t dim, float divisor) {
  const int64_t grain = std::max<int64_t>(64, dim / std::max(1, at::get_num_threads()));
  at::parallel_for(0, dim, grain, [&](int64_t col_begin, int64_t col_end) {
    for (int64_t row = 0; row < rows; ++row) {
      const scalar_t* src = grad + row * dim;
      for (int64_t j = 0; j < k; ++j) {
        float* __restrict dst = acc + ids[row * k + j] * dim;
        for (int64_t d = col_begin; d < col_end; ++d) dst[d] += static_cast<float>(src[d]) / divisor;
      }
    }
  });
}

at::Tensor group_backward_cpu(const at::Tensor& grad, const at::Tensor& ids, int64_t num_embeddings,
                              int64_t group_size, double divisor) {
  check_ids(ids, "ids");
  TORCH_CHECK_VALUE(grad.dim() == 3 && grad.size(0) == ids.size(0) && grad.size(1) * group_size == ids.size(1),
                    "grad must be [B, T/k, D] for ids [B, T]");
  auto ids_c = ids.contiguous();
  if (ids_c.numel() > 0) {
    const int64_t low = ids_c.min().item<int64_t>(), high = ids_c.max().item<int64_t>();
    TORCH_CHECK_VALUE(low >= 0 && high < num_embeddings, "ids outside [0, ", num_embeddings, ")");
  }
  auto grad_c = grad.contiguous();
  const int64_t dim = grad.size(2);
  auto acc = at::empty({num_embeddings, dim}, grad.options().dtype(at::kFloat));
  advise_huge_pages(acc);
  acc.zero_();
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, grad.scalar_type(), "group_backward_cpu", [&] {
    scatter_rows<scalar_t>(grad_c.const_data_ptr<scalar_t>(), ids_c.const_data_ptr<int64_t>(),
                           acc.mutable_data_ptr<float>(), grad.size(0) * grad.size(1), group_size, dim,
                           static_cast<float>(divisor));
  });
  return acc.scalar_type() == grad.scalar_type() ? acc : acc.to(grad.scalar_type());
}

// -------------------------------------------------------------------------------------------- ungroup

// dst[d] = src[d] + emb[d] in fp32, rounded once, for `rows` consecutive rows; the next table row is
// prefetched while this one is added (cloned for AVX2 / AVX-512 like add_rows below).
template <typename scalar_t>
inline __attribute__((always_inline)) void add_rows_to_impl(scalar_t* __restrict out, const scalar_t* __restrict u,
                                                            const scalar_t* __restrict table,
                                                            const int64_t* __restrict ids, int64_t rows,
                                                            int64_t dim) {
  for (int64_t row = 0; row < rows; ++row) {
    if (row + 1 < rows) prefetch_row(table + ids[row + 1] * dim, dim * sizeof(scalar_t));
    const scalar_t* __restrict src = u + row * dim;
    const scalar_t* __restrict emb = table + ids[row] * dim;
    scalar_t* __restrict dst = out + row * dim;
    for (int64_t d = 0; d < dim; ++d) {
      dst[d] = static_cast<scalar_t>(static_cast<float>(src[d]) + static_cast<float>(emb[d]));
    }
  }
}

#define FUNAUDIOCHAT_ADD_ROWS_TO(scalar_t)                                                                     \
  FUNAUDIOCHAT_TARGET_CLONES void add_rows_to(scalar_t* out, const scalar_t* u, const scalar_t* table,         \
                                              const int64_t* ids, int64_t rows, int64_t dim) {                 \
    add_rows_to_impl(out, u, table, ids, rows, dim);                                                           \
  }
FUNAUDIOCHAT_ADD_ROWS_TO(float)
FUNAUDIOCHAT_ADD_ROWS_TO(at::BFloat16)
FUNAUDIOCHAT_ADD_ROWS_TO(at::Half)
#undef FUNAUDIOCHAT_ADD_ROWS_TO

void add_rows_to(double* out, const double* u, const double* table, const int64_t* ids, int64_t rows,
                 int64_t dim) {
  add_rows_to_impl(out, u, table, ids, rows, dim);
}

// All ids are checked before the parallel loop (ungroup_cpu), so the kernel reads only valid rows.
template <typename scalar_t>
void ungroup_rows(const scalar_t* u, const int64_t* ids, const scalar_t* table, scalar_t* out, int64_t rows,
                  int64_t dim) {
  at::parallel_for(0, rows, 16, [&](int64_t begin, int64_t end) {
    add_rows_to(out + begin * dim, u + begin * dim, table, ids + begin, end - begin, dim);
  });
}

// Shapes, dtypes and id range of ungroup / ungroup_, checked before anything is written.
void check_ungroup_args(const at::Tensor& u, const at::Tensor& prev_ids, const at::Tensor& table,
                        int64_t group_size) {
  check_ids(prev_ids, "prev_ids");
  TORCH_CHECK_VALUE(u.dim() == 3 && table.dim() == 2 && u.scalar_type() == table.scalar_type(),
                    "u must be [B, L, k*D] and table [V, D] of one dtype");
  const int64_t batch = u.size(0), length = u.size(1), vocab = table.size(0), dim = table.size(1);
  TORCH_CHECK_VALUE(group_size > 0 && u.size(2) == group_size * dim, "u's last dim must be k*D");
  TORCH_CHECK_VALUE(prev_ids.size(0) == batch && prev_ids.size(1) == length * group_size,
                    "prev_ids must be [B, L*k]");
  auto ids_c = prev_ids.contiguous();
  const int64_t* ids = ids_c.const_data_ptr<int64_t>();
  for (int64_t row = 0, rows = ids_c.numel(); row < rows; ++row) {
    TORCH_CHECK_VALUE(ids[row] >= 0 && ids[row] < vocab, "prev_ids contains ", ids[row], ", outside [0, ", vocab,
                      ")");
  }
}

at::Tensor ungroup_cpu(const at::Tensor& u, const at::Tensor& prev_ids, const at::Tensor& table,
                       int64_t group_size) {
  check_ungroup_args(u, prev_ids, table, group_size);
  const int64_t batch = u.size(0), length = u.size(1), dim = table.size(1);
  auto u_c = u.contiguous();
  auto ids_c = prev_ids.contiguous();
  auto table_c = table.contiguous();
  const int64_t rows = batch * length * group_size;
  const int64_t* ids = ids_c.const_data_ptr<int64_t>();
  auto out = at::empty({batch, length * group_size, dim}, u.options());
  advise_huge_pages(out);
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, u.scalar_type(), "ungroup_cpu", [&] {
    ungroup_rows<scalar_t>(u_c.const_data_ptr<scalar_t>(), ids, table_c.const_data_ptr<scalar_t>(),
                           out.mutable_data_ptr<scalar_t>(), rows, dim);
  });
  return out;
}

FUNAUDIOCHAT_TARGET_CLONES void add_rows(float* dst, const float* table, const int64_t* ids, int64_t rows,
                                         int64_t dim) {
  for (int64_t row = 0; row < rows; ++row) {
    if (row + 1 < rows) prefetch_row(table + ids[row + 1] * dim, dim * sizeof(*table));
    add_row(dst + row * dim, table + ids[row] * dim, dim);
  }
}

FUNAUDIOCHAT_TARGET_CLONES void add_rows(at::BFloat16* dst, const at::BFloat16* table, const int64_t* ids,
                                         int64_t rows, int64_t dim) {
  for (int64_t row = 0; row < rows; ++row) {
    if (row + 1 < rows) prefetch_row(table + ids[row + 1] * dim, dim * sizeof(*table));
    add_row(dst + row * dim, table + ids[row] * dim, dim);
  }
}

FUNAUDIOCHAT_TARGET_CLONES void add_rows(at::Half* dst, const at::Half* table, const int64_t* ids, int64_t rows,
                                         int64_t dim) {
  for (int64_t row = 0; row < rows; ++row) {
    if (row + 1 < rows) prefetch_row(table + ids[row + 1] * dim, dim * sizeof(*table));
    add_row(dst + row * dim, table + ids[row] * dim, dim);
  }
}

void add_rows(double* dst, const double* table, const int64_t* ids, int64_t rows, int64_t dim) {
  for (int64_t row = 0; row < rows; ++row) {
    for (int64_t d = 0; d < dim; ++d) dst[row * dim + d] += table[ids[row] * dim + d];
  }
}

// In place: u's rows get the embeddings added. All ids are checked before the first write, so a bad id
// leaves u untouched.
template <typename scalar_t>
void ungroup_inplace_rows(scalar_t* u, const int64_t* ids, const scalar_t* table, int64_t rows, int64_t dim) {
  at::parallel_for(0, rows, 16, [&](int64_t begin, int64_t end) {
    add_rows(u + begin * dim, table, ids + begin, end - begin, dim);
  });
}

at::Tensor& ungroup_inplace_cpu(at::Tensor& u, const at::Tensor& prev_ids, const at::Tensor& table,
                                int64_t group_size) {
  TORCH_CHECK_VALUE(u.is_contiguous(), "u must be contiguous (ungroup_ writes into its storage)");
  check_ungroup_args(u, prev_ids, table, group_size);
  const int64_t batch = u.size(0), length = u.size(1), dim = table.size(1);
  auto ids_c = prev_ids.contiguous();
  auto table_c = table.contiguous();
  const int64_t rows = batch * length * group_size;
  const int64_t* ids = ids_c.const_data_ptr<int64_t>();
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, u.scalar_type(), "ungroup_inplace_cpu", [&] {
    ungroup_inplace_rows<scalar_t>(u.mutable_data_ptr<scalar_t>(), ids, table_c.const_data_ptr<scalar_t>(), rows,
                                   dim);
  });
  return u;
}

// Autograd kernel of ungroup_ (device-independent; redispatches below autograd). d/du is the identity and
// d/dtable the scatter-add of group_backward with k = 1, as for ungroup.
at::Tensor& call_ungroup_inplace(at::Tensor& u, const at::Tensor& prev_ids, const at::Tensor& table,
                                 int64_t group_size) {
  static const auto op = c10::Dispatcher::singleton()
                             .findSchemaOrThrow("funaudiochat::ungroup_", "")
                             .typed<at::Tensor&(at::Tensor&, const at::Tensor&, const at::Tensor&, int64_t)>();
  return op.call(u, prev_ids, table, group_size);
}

at::Tensor call_group_backward(const at::Tensor& grad, const at::Tensor& ids, int64_t num_embeddings,
                               int64_t group_size, double divisor) {
  static const auto op =
      c10::Dispatcher::singleton()
          .findSchemaOrThrow("funaudiochat::group_backward", "")
          .typed<at::Tensor(const at::Tensor&, const at::Tensor&, int64_t, int64_t, double)>();
  return op.call(grad, ids, num_embeddings, group_size, divisor);
}

class UngroupInplace : public torch::autograd::Function<UngroupInplace> {
 public:
  static at::Tensor forward(torch::autograd::AutogradContext* ctx, at::Tensor u, const at::Tensor& prev_ids,
                            const at::Tensor& table, int64_t group_size) {
    {
      at::AutoDispatchBelowADInplaceOrView guard;
      call_ungroup_inplace(u, prev_ids, table, group_size);
    }
    ctx->mark_dirty({u});
    ctx->save_for_backward({prev_ids});
    ctx->saved_data["num_embeddings"] = table.size(0);
    ctx->saved_data["dim"] = table.size(1);
    return u;
  }

  static torch::autograd::variable_list backward(torch::autograd::AutogradContext* ctx,
                                                 torch::autograd::variable_list grads) {
    const at::Tensor& grad = grads[0];  // [B, L, k*D], like u
    at::Tensor grad_table;
    if (ctx->needs_input_grad(2) && grad.defined()) {
      const at::Tensor prev_ids = ctx->get_saved_variables()[0];
      const int64_t dim = ctx->saved_data["dim"].toInt();
      grad_table = call_group_backward(grad.reshape({grad.size(0), prev_ids.size(1), dim}), prev_ids,
                                       ctx->saved_data["num_embeddings"].toInt(), 1, 1.0);
    }
    return {ctx->needs_input_grad(0) ? grad : at::Tensor(), at::Tensor(), grad_table, at::Tensor()};
  }
};

at::Tensor& ungroup_inplace_autograd(at::Tensor& u, const at::Tensor& prev_ids, const at::Tensor& table,
                                     int64_t group_size) {
  UngroupInplace::apply(u, prev_ids, table, group_size);  // rebases u's autograd history in place
  return u;
}


}  // namespace
}  // namespace funaudiochat

TORCH_LIBRARY(funaudiochat, m) {
  m.def("group(Tensor ids, Tensor table, int group_size, Tensor? text=None) -> Tensor");
  m.def("group_backward(Tensor grad, Tensor ids, int num_embeddings, int group_size, float divisor) -> Tensor");
  m.def("ungroup(Tensor u, Tensor prev_ids, Tensor table, int group_size) -> Tensor");
  m.def("ungroup_(Tensor(a!) u, Tensor prev_ids, Tensor table, int group_size) -> Tensor(a!)");
  m.def(
      "sample(Tensor logits, Tensor history, Tensor uniforms, float temperature, int top_k, float top_p, "
      "float repetition_penalty, int ras_window, float ras_tau) -> Tensor");
  m.def("rows_linear(Tensor x, Tensor weight) -> Tensor");
  m.def(
      "qwen3_decode_one(Tensor embeds, Tensor[] weights, Tensor(a!)[] key_rooms, Tensor(b!)[] value_rooms, "
      "int length, Tensor cos, Tensor sin, Tensor bias, int num_heads, int num_kv_heads, float eps, "
      "float scaling) -> Tensor");
}

TORCH_LIBRARY_IMPL(funaudiochat, CPU, m) {
  m.impl("group", &funaudiochat::group_cpu);
  m.impl("group_backward", &funaudiochat::group_backward_cpu);
  m.impl("ungroup", &funaudiochat::ungroup_cpu);
  m.impl("ungroup_", &funaudiochat::ungroup_inplace_cpu);
  m.impl("sample", &funaudiochat::sample_cpu);
  m.impl("rows_linear", &funaudiochat::rows_linear_cpu);
  m.impl("qwen3_decode_one", &funaudiochat::qwen3_decode_one_cpu);
}

TORCH_LIBRARY_IMPL(funaudiochat, Autograd, m) {
  m.impl("ungroup_", &funaudiochat::ungroup_inplace_autograd);
}

#ifndef FUNAUDIOCHAT_WITH_CUDA
#define FUNAUDIOCHAT_WITH_CUDA 0
#endif

static PyModuleDef module_def = {PyModuleDef_HEAD_INIT, "_C",
                                 "Fused DRSR kernels; importing registers torch.ops.funaudiochat.*", -1, nullptr};

PyMODINIT_FUNC PyInit__C(void) {
  PyObject* module = PyModule_Create(&module_def);
  if (module != nullptr && PyModule_AddIntConstant(module, "WITH_CUDA", FUNAUDIOCHAT_WITH_CUDA) < 0) {
    Py_DECREF(module);
    return nullptr;
  }
  return module;
}
