// One new position through a Qwen3 decoder stack, as one call: funaudiochat::qwen3_decode_one.
//
// The computation is that of funaudiochat/drsr/fast_decode.py::decode_one_reference (its Python body is the
// reference and the tests compare the two): RMSNorm, q/k/v with Qwen3's per-head q/k norms, rotary,
// grouped-query attention over the cache, SiLU MLP, residuals, the final norm. At decoding sizes every
// statement is a small matrix-vector product or a pointwise op on a few hundred numbers, so the Python
// interpreter's cost per statement is a large part of a step; here each layer costs the ATen calls alone.
// The ops are ATen's, so the arithmetic (and its rounding) is the reference's.
//
// Arguments (registered in drsr_ops.cpp):
//   embeds        [B, 1, D]            the new position's input embedding
//   weights       11 per layer, then the final norm: input_layernorm, q_proj, k_proj, v_proj, q_norm,
//                 k_norm, o_proj, post_attention_layernorm, gate_proj, up_proj, down_proj (no biases)
//   key_rooms     per layer [B, KV, room, hd]; positions [0, length) hold the cache, position `length`
//   value_rooms   receives the new key / value (room > length), written in place
//   cos, sin      [B, 1, 1, hd]        rotary factors of the new position
//   bias          [B, 1, 1, length+1]  additive attention mask (0 = attend, dtype minimum = masked)
// Returns the final hidden state [B, 1, D].

#include "drsr_ops.h"

#include <ATen/Parallel.h>
#include <c10/core/GradMode.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <vector>

namespace funaudiochat {
namespace {

constexpr int64_t kWeightsPerLayer = 11;
constexpr int64_t kMaxRows = 16;  // rows_linear: more rows go to a general matrix product

// Loops the compiler vectorises, built for AVX-512, AVX2+FMA and plain x86-64 and chosen when the library
// loads (GCC's target_clones); elsewhere one portable build.
#if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__)
#define FUNAUDIOCHAT_SIMD_CLONES __attribute__((target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default")))
#else
#define FUNAUDIOCHAT_SIMD_CLONES
#endif

FUNAUDIOCHAT_SIMD_CLONES
float dot(const float* a, const float* b, int64_t n) {
  float sum = 0.f;
#pragma omp simd reduction(+ : sum)
  for (int64_t i = 0; i < n; ++i) sum += a[i] * b[i];
  return sum;
}

// out[i] += scale * x[i]
FUNAUDIOCHAT_SIMD_CLONES
void axpy(float scale, const float* x, float* out, int64_t n) {
#pragma omp simd
  for (int64_t i = 0; i < n; ++i) out[i] += scale * x[i];
}

// out[q, j] = dot(weight[j], x[q]) for output rows [begin, end): each weight row is read once, from
// memory, and used for every input row while it is in the first-level cache.
FUNAUDIOCHAT_SIMD_CLONES
void dot_rows(const float* weight, const float* x, float* out, int64_t begin, int64_t end, int64_t k, int64_t rows,
              int64_t n) {
  for (int64_t j = begin; j < end; ++j) {
    const float* wj = weight + j * k;
    for (int64_t q = 0; q < rows; ++q) {
      const float* xq = x + q * k;
      float sum = 0.f;
#pragma omp simd reduction(+ : sum)
      for (int64_t i = 0; i < k; ++i) sum += wj[i] * xq[i];
      out[q * n + j] = sum;
    }
  }
}

}  // namespace

// F.linear(x, weight) without bias for x [..., K] of at most kMaxRows rows, float32 on the CPU: the product
// of a decoding step, which is bound by reading the weight from memory. The output rows are split over the
// threads, each reading its part of the weight sequentially once (a general matrix product reads a
// transposed one-row problem less well: measured here 2.2x slower for one step's weights, one row, 2
// threads). Other inputs, and any that need a gradient, go to at::linear.
at::Tensor rows_linear_cpu(const at::Tensor& x, const at::Tensor& weight) {
  TORCH_CHECK(weight.dim() == 2 && x.dim() >= 1 && x.size(-1) == weight.size(1),
              "rows_linear: x [..., K] and weight [N, K] expected, got ", x.sizes(), " and ", weight.sizes());
  const int64_t n = weight.size(0), k = weight.size(1);
  const int64_t rows = k == 0 ? 0 : x.numel() / k;
  if (x.scalar_type() != at::kFloat || weight.scalar_type() != at::kFloat || !weight.is_contiguous() ||
      rows > kMaxRows || rows == 0 ||
      (c10::GradMode::is_enabled() && (x.requires_grad() || weight.requires_grad()))) {
    return at::linear(x, weight);
  }
  const at::Tensor input = x.contiguous();
  std::vector<int64_t> shape = x.sizes().vec();
  shape.back() = n;
  at::Tensor out = at::empty(shape, x.options());
  const float* w = weight.data_ptr<float>();
  const float* in = input.data_ptr<float>();
  float* o = out.data_ptr<float>();
  at::parallel_for(0, n, 16, [&](int64_t begin, int64_t end) { dot_rows(w, in, o, begin, end, k, rows, n); });
  return out;
}

namespace {

// Qwen3RMSNorm over the last dimension (in float32 for lower precisions).
at::Tensor rms(const at::Tensor& x, const at::Tensor& weight, double eps) {
  if (x.scalar_type() == at::kFloat && weight.scalar_type() == at::kFloat) {
    return at::rms_norm(x, {weight.size(0)}, weight, eps);
  }
  at::Tensor h = x.to(at::kFloat);
  h = h * at::rsqrt(h.pow(2).mean(-1, /*keepdim=*/true) + eps);
  return weight * h.to(x.scalar_type());
}

at::Tensor rotate(const at::Tensor& x, const at::Tensor& cos, const at::Tensor& sin) {
  const int64_t half = x.size(-1) / 2;
  const at::Tensor rotated = at::cat({x.narrow(-1, half, half).neg(), x.narrow(-1, 0, half)}, -1);
  return x * cos + rotated * sin;
}

// ---- float32 CPU loops for the small parts of a layer ----------------------------------------------------
// At decoding sizes the norms and the attention over the cache are a few thousand multiply-adds each; as
// loops they cost less than the dispatch of the ATen ops that would compose them. Sums run in float32 in
// another order than ATen's (results agree to float rounding); the norms' sums of squares in double.

// out[r] = x[r] / rms(x[r]) * weight for R rows of D (out may be x).
void rms_rows(const float* x, const float* weight, float* out, int64_t rows, int64_t d, double eps) {
  for (int64_t r = 0; r < rows; ++r) {
    const float* xr = x + r * d;
    double squares = 0.0;
    for (int64_t i = 0; i < d; ++i) squares += static_cast<double>(xr[i]) * xr[i];
    const float inverse = static_cast<float>(1.0 / std::sqrt(squares / static_cast<double>(d) + eps));
    float* o = out + r * d;
    for (int64_t i = 0; i < d; ++i) o[i] = weight[i] * (xr[i] * inverse);
  }
}

// Per head of hd values: Qwen3's q/k norm, then rotary (x * cos + rotate_half(x) * sin), into out.
void norm_rotate(const float* x, const float* weight, const float* cos, const float* sin, float* out,
                 int64_t heads, int64_t hd, double eps) {
  const int64_t half = hd / 2;
  std::vector<float> normed(hd);
  for (int64_t h = 0; h < heads; ++h) {
    rms_rows(x + h * hd, weight, normed.data(), 1, hd, eps);
    float* o = out + h * hd;
    for (int64_t i = 0; i < half; ++i) o[i] = normed[i] * cos[i] - normed[i + half] * sin[i];
    for (int64_t i = half; i < hd; ++i) o[i] = normed[i] * cos[i] + normed[i - half] * sin[i];
  }
}

// The attention block of one new position for B rows (float32, contiguous): q/k norms and rotary, the
// new key and value written at position `length` of the rooms, softmax(q.K^T * scaling + bias).V per
// query head over positions [0, length].
//   q [B, H*hd], k and v [B, KV*hd] (projections); cos, sin [B, hd]; bias [B, length+1];
//   rooms [B, KV, room, hd]; out [B, H*hd]
void attend_fp32(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v, const at::Tensor& q_norm,
                 const at::Tensor& k_norm, const at::Tensor& cos, const at::Tensor& sin, const at::Tensor& bias,
                 const at::Tensor& key_room, const at::Tensor& value_room, int64_t length, int64_t heads,
                 int64_t kv_heads, double eps, double scaling, const at::Tensor& out) {
  const int64_t b = q.size(0), hd = key_room.size(3), room = key_room.size(2), groups = heads / kv_heads;
  const int64_t span = length + 1;
  float* keys = key_room.data_ptr<float>();
  float* values = value_room.data_ptr<float>();
  const float* cos_p = cos.data_ptr<float>();
  const float* sin_p = sin.data_ptr<float>();
  std::vector<float> rotated_q(heads * hd);
  for (int64_t r = 0; r < b; ++r) {
    norm_rotate(q.data_ptr<float>() + r * heads * hd, q_norm.data_ptr<float>(), cos_p + r * hd, sin_p + r * hd,
                rotated_q.data(), heads, hd, eps);
    for (int64_t g = 0; g < kv_heads; ++g) {
      const int64_t at_new = ((r * kv_heads + g) * room + length) * hd;
      norm_rotate(k.data_ptr<float>() + (r * kv_heads + g) * hd, k_norm.data_ptr<float>(), cos_p + r * hd,
                  sin_p + r * hd, keys + at_new, 1, hd, eps);
      std::copy_n(v.data_ptr<float>() + (r * kv_heads + g) * hd, hd, values + at_new);
    }
    const float* bias_r = bias.data_ptr<float>() + r * span;
    float* out_r = out.data_ptr<float>() + r * heads * hd;
    at::parallel_for(0, heads, 1, [&](int64_t begin, int64_t end) {
      std::vector<float> scores(span);
      for (int64_t h = begin; h < end; ++h) {
        const float* qh = rotated_q.data() + h * hd;
        const int64_t g = h / groups;
        const float* kh = keys + (r * kv_heads + g) * room * hd;
        const float* vh = values + (r * kv_heads + g) * room * hd;
        float top = -std::numeric_limits<float>::infinity();
        for (int64_t s = 0; s < span; ++s) {
          scores[s] = dot(qh, kh + s * hd, hd) * static_cast<float>(scaling) + bias_r[s];
          top = std::max(top, scores[s]);
        }
        float total = 0.f;
        for (int64_t s = 0; s < span; ++s) total += (scores[s] = std::exp(scores[s] - top));
        float* mixed = out_r + h * hd;
        std::fill_n(mixed, hd, 0.f);
        for (int64_t s = 0; s < span; ++s) axpy(scores[s] / total, vh + s * hd, mixed, hd);
      }
    });
  }
}

// Everything the float32 loops read by pointer is checked here: a wrong size is an error, never a read past
// the end of a tensor.
void check_arguments(const at::Tensor& embeds, at::TensorList weights, at::TensorList key_rooms,
                     at::TensorList value_rooms, int64_t length, const at::Tensor& cos, const at::Tensor& sin,
                     const at::Tensor& bias, int64_t num_heads, int64_t num_kv_heads) {
  TORCH_CHECK(embeds.dim() == 3 && embeds.size(1) == 1, "qwen3_decode_one: embeds must be [B, 1, D], got ",
              embeds.sizes());
  const int64_t b = embeds.size(0), d = embeds.size(2);
  const int64_t layers = static_cast<int64_t>(key_rooms.size());
  TORCH_CHECK(layers >= 1, "qwen3_decode_one: at least one layer (key/value room) is needed");
  const int64_t head_dim = key_rooms[0].dim() == 4 ? key_rooms[0].size(3) : -1;
  TORCH_CHECK(static_cast<int64_t>(value_rooms.size()) == layers,
              "qwen3_decode_one: one value room per key room, got ", value_rooms.size(), " and ", layers);
  TORCH_CHECK(static_cast<int64_t>(weights.size()) == layers * kWeightsPerLayer + 1,
              "qwen3_decode_one: expected ", layers * kWeightsPerLayer + 1, " weights (11 per layer + the final ",
              "norm) for ", layers, " layers, got ", weights.size());
  TORCH_CHECK(num_heads > 0 && num_kv_heads > 0 && num_heads % num_kv_heads == 0,
              "qwen3_decode_one: num_heads must be a positive multiple of num_kv_heads, got ", num_heads, " and ",
              num_kv_heads);
  for (int64_t l = 0; l < layers; ++l) {
    for (const at::Tensor& room : {key_rooms[l], value_rooms[l]}) {
      TORCH_CHECK(room.dim() == 4 && room.size(0) == b && room.size(1) == num_kv_heads && room.size(2) > length &&
                      room.size(3) == head_dim,
                  "qwen3_decode_one: layer ", l, "'s key/value room must be [B = ", b, ", ", num_kv_heads,
                  ", > length (", length, "), head_dim = ", head_dim, "], got ", room.sizes());
    }
    const at::Tensor* w = weights.data() + l * kWeightsPerLayer;
    for (int index : {0, 7}) {
      TORCH_CHECK(w[index].numel() == d, "qwen3_decode_one: layer ", l, "'s weight ", index,
                  " (a layer norm) must have D = ", d, " values, got ", w[index].sizes());
    }
    for (int index : {4, 5}) {
      TORCH_CHECK(w[index].numel() == head_dim, "qwen3_decode_one: layer ", l, "'s weight ", index,
                  " (a q/k norm) must have head_dim = ", head_dim, " values, got ", w[index].sizes());
    }
  }
  TORCH_CHECK(weights[weights.size() - 1].numel() == d, "qwen3_decode_one: the final norm must have D = ", d,
              " values, got ", weights[weights.size() - 1].sizes());
  TORCH_CHECK(bias.dim() == 4 && bias.numel() == b * (length + 1) && bias.size(-1) == length + 1,
              "qwen3_decode_one: bias must be [B = ", b, ", 1, 1, length + 1 = ", length + 1, "], got ",
              bias.sizes());
  for (const at::Tensor& factor : {cos, sin}) {
    TORCH_CHECK(factor.numel() == b * head_dim && factor.size(-1) == head_dim,
                "qwen3_decode_one: cos and sin must be [B = ", b, ", 1, 1, head_dim = ", head_dim, "], got ",
                factor.sizes());
  }
}

}  // namespace

namespace {

bool all_float(at::TensorList tensors) {
  return std::all_of(tensors.begin(), tensors.end(), [](const at::Tensor& t) {
    return t.scalar_type() == at::kFloat && t.is_contiguous();
  });
}

// One layer in float32: the norms and the attention as loops, the products through split_linear.
void layer_fp32(at::Tensor& hidden, const at::Tensor* w, const at::Tensor& key_room, const at::Tensor& value_room,
                int64_t length, const at::Tensor& cos, const at::Tensor& sin, const at::Tensor& bias,
                int64_t num_heads, int64_t num_kv_heads, double eps, double scaling) {
  const int64_t b = hidden.size(0), d = hidden.size(2), head_dim = key_room.size(3);
  at::Tensor x = at::empty_like(hidden);
  rms_rows(hidden.data_ptr<float>(), w[0].data_ptr<float>(), x.data_ptr<float>(), b, d, eps);
  const at::Tensor q = rows_linear_cpu(x, w[1]).contiguous();
  const at::Tensor k = rows_linear_cpu(x, w[2]).contiguous();
  const at::Tensor v = rows_linear_cpu(x, w[3]).contiguous();
  const at::Tensor attended = at::empty({b, 1, num_heads * head_dim}, hidden.options());
  attend_fp32(q, k, v, w[4], w[5], cos, sin, bias, key_room, value_room, length, num_heads, num_kv_heads, eps,
              scaling, attended);
  hidden.add_(rows_linear_cpu(attended, w[6]));
  rms_rows(hidden.data_ptr<float>(), w[7].data_ptr<float>(), x.data_ptr<float>(), b, d, eps);
  at::Tensor gate = rows_linear_cpu(x, w[8]);
  const at::Tensor gated = at::silu_(gate).mul_(rows_linear_cpu(x, w[9]));
  hidden.add_(rows_linear_cpu(gated, w[10]));
}

// One layer in any dtype, as ATen ops (the reference's statements).
void layer_aten(at::Tensor& hidden, const at::Tensor* w, const at::Tensor& key_room, const at::Tensor& value_room,
                int64_t length, const at::Tensor& cos, const at::Tensor& sin, const at::Tensor& bias,
                int64_t num_heads, int64_t num_kv_heads, double eps, double scaling) {
  const int64_t b = hidden.size(0), head_dim = key_room.size(3), groups = num_heads / num_kv_heads;
  at::Tensor x = rms(hidden, w[0], eps);
  at::Tensor q = rows_linear_cpu(x, w[1]);
  at::Tensor k = rows_linear_cpu(x, w[2]);
  const at::Tensor v = rows_linear_cpu(x, w[3]).view({b, 1, num_kv_heads, head_dim}).transpose(1, 2);
  q = rms(q.view({b, 1, num_heads, head_dim}), w[4], eps);
  k = rms(k.view({b, 1, num_kv_heads, head_dim}), w[5], eps);
  q = rotate(q.transpose(1, 2), cos, sin);  // [B, H, 1, hd]
  k = rotate(k.transpose(1, 2), cos, sin);  // [B, KV, 1, hd]
  key_room.narrow(2, length, 1).copy_(k);
  value_room.narrow(2, length, 1).copy_(v);
  const at::Tensor keys = key_room.narrow(2, 0, length + 1);
  const at::Tensor values = value_room.narrow(2, 0, length + 1);
  // the query heads of one key/value head attend together: [B, KV, groups, hd]
  const at::Tensor scores =
      at::matmul(q.reshape({b, num_kv_heads, groups, head_dim}), keys.transpose(2, 3)) * scaling;
  const at::Tensor probs = at::softmax(scores + bias, -1, at::kFloat).to(q.scalar_type());
  const at::Tensor attended = at::matmul(probs, values).reshape({b, 1, num_heads * head_dim});
  hidden = hidden + rows_linear_cpu(attended, w[6]);
  x = rms(hidden, w[7], eps);
  const at::Tensor gated = at::silu(rows_linear_cpu(x, w[8])) * rows_linear_cpu(x, w[9]);
  hidden = hidden + rows_linear_cpu(gated, w[10]);
}

}  // namespace

at::Tensor qwen3_decode_one_cpu(const at::Tensor& embeds, at::TensorList weights, at::TensorList key_rooms,
                                at::TensorList value_rooms, int64_t length, const at::Tensor& cos,
                                const at::Tensor& sin, const at::Tensor& bias, int64_t num_heads,
                                int64_t num_kv_heads, double eps, double scaling) {
  check_arguments(embeds, weights, key_rooms, value_rooms, length, cos, sin, bias, num_heads, num_kv_heads);
  const int64_t layers = static_cast<int64_t>(key_rooms.size());
  const at::Tensor cos_c = cos.contiguous(), sin_c = sin.contiguous(), bias_c = bias.contiguous();
  const bool fp32 = embeds.scalar_type() == at::kFloat && all_float(weights) && all_float(key_rooms) &&
                    all_float(value_rooms) && all_float({cos_c, sin_c, bias_c});
  at::Tensor hidden = embeds.contiguous().clone();
  for (int64_t l = 0; l < layers; ++l) {
    const at::Tensor* w = weights.data() + l * kWeightsPerLayer;
    if (fp32) {
      layer_fp32(hidden, w, key_rooms[l], value_rooms[l], length, cos_c, sin_c, bias_c, num_heads, num_kv_heads, eps,
                 scaling);
    } else {
      layer_aten(hidden, w, key_rooms[l], value_rooms[l], length, cos_c, sin_c, bias_c, num_heads, num_kv_heads, eps,
                 scaling);
    }
  }
  return rms(hidden, weights[weights.size() - 1], eps);
}

}  // namespace funaudiochat
