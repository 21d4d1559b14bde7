// Declarations shared by the CPU kernel files of the fused DRSR ops (drsr_ops.cpp, drsr_sample.cpp).
#pragma once

#include <ATen/ATen.h>

namespace funaudiochat {

// Every id must be int64 [B, T].
void check_ids(const at::Tensor& ids, const char* name);

// funaudiochat::sample on the CPU (drsr_sample.cpp).
at::Tensor sample_cpu(const at::Tensor& logits, const at::Tensor& history, const at::Tensor& uniforms,
                      double temperature, int64_t top_k, double top_p, double repetition_penalty,
                      int64_t ras_window, double ras_tau);

}  // namespace funaudiochat
