// Declarations shared by the CPU kernel files of the fused DRSR ops (drsr_ops.cpp, drsr_sample.cpp,
// drsr_decode.cpp).
#pragma once

#include <ATen/ATen.h>

namespace funaudiochat {

// Every id must be int64 [B, T].
void check_ids(const at::Tensor& ids, const char* name);

// funaudiochat::sample on the CPU (drsr_sample.cpp).
at::Tensor sample_cpu(const at::Tensor& logits, const at::Tensor& history, const at::Tensor& uniforms,
                      double temperature, int64_t top_k, double top_p, double repetition_penalty,
                      int64_t ras_window, double ras_tau);

// funaudiochat::rows_linear and funaudiochat::qwen3_decode_one on the CPU (drsr_decode.cpp).
at::Tensor rows_linear_cpu(const at::Tensor& x, const at::Tensor& weight);
at::Tensor qwen3_decode_one_cpu(const at::Tensor& embeds, at::TensorList weights, at::TensorList key_rooms,
                                at::TensorList value_rooms, int64_t length, const at::Tensor& cos,
                                const at::Tensor& sin, const at::Tensor& bias, int64_t num_heads,
                                int64_t num_kv_heads, double eps, double scaling);

}  // namespace funaudiochat
