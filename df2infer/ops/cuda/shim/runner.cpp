// The host runner: the package's kernels compiled for the CPU through cuda_shim.h, behind one C entry
// point with cuLaunchKernel's calling convention (params[i] points at argument i's value), so the
// Python side packs arguments once for the GPU and the shim alike (df2infer.ops.cuda.launch).
#include <cstring>
#include <utility>

#include "cuda_shim.h"
#include "../letterbox.cu"
#include "../paste_masks.cu"
#include "../landmarks.cu"

namespace {
template <typename... A, std::size_t... I>
void call(void (*kernel)(A...), void** params, std::index_sequence<I...>) {
  kernel(*static_cast<A*>(params[I])...);
}

template <typename... A>
void run(void (*kernel)(A...), const unsigned int grid[3], const unsigned int block[3], void** params) {
  shim::run_grid(grid, block, [&] { call(kernel, params, std::index_sequence_for<A...>{}); });
}

struct Entry {
  const char* name;
  void (*launch)(const unsigned int*, const unsigned int*, void**);
};

#define SHIM_KERNEL(k) {#k, [](const unsigned int* g, const unsigned int* b, void** p) { run(k, g, b, p); }}
const Entry kKernels[] = {
    SHIM_KERNEL(letterbox_kernel),
    SHIM_KERNEL(letterbox_nv12_kernel),
    SHIM_KERNEL(paste_masks_weights),
    SHIM_KERNEL(paste_masks_compact),
    SHIM_KERNEL(paste_masks_instance_map),
    SHIM_KERNEL(landmarks_subpixel),
    SHIM_KERNEL(landmarks_cubic_tables),
    SHIM_KERNEL(landmarks_torchvision_columns),
    SHIM_KERNEL(landmarks_torchvision),
};
}  // namespace

// Run kernel `name` over grid x block; 0 on success, -1 for an unknown name.
extern "C" int shim_launch(const char* name, const unsigned int* grid, const unsigned int* block, void** params) {
  for (const Entry& e : kKernels)
    if (std::strcmp(e.name, name) == 0) {
      e.launch(grid, block, params);
      return 0;
    }
  return -1;
}

// Number of kernels and their names, so the Python side can check it lists the same ones.
extern "C" int shim_kernel_count() { return (int)(sizeof(kKernels) / sizeof(kKernels[0])); }
extern "C" const char* shim_kernel_name(int i) { return kKernels[i].name; }

// The device helper behind the FP16 output, exposed for a direct test against numpy.
extern "C" unsigned short shim_f32_to_f16_bits(float f) { return f32_to_f16_bits(f); }
