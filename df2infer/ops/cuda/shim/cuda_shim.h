// CPU host shim: just enough of CUDA's kernel dialect to compile the package's .cu files with the
// system C++ compiler and run a launch's grid as plain loops, one (block, thread) after another.
//
// It models: __global__/__device__/__forceinline__/__restrict__, threadIdx/blockIdx/blockDim/
// gridDim, and the math functions the kernels use (IEEE single/double precision, as on the GPU with
// --fmad=false, --ftz=false, --prec-div=true). It does NOT model shared memory, __syncthreads or warp
// intrinsics: kernels that are run through it must give each thread independent work, which is what
// makes running the threads one after another equivalent to running them in parallel.
#pragma once
#include <math.h>
#include <cstring>

#define __global__
#define __device__
#define __host__
#define __forceinline__ inline
#define __restrict__ __restrict

struct uint3 { unsigned int x, y, z; };
struct dim3 { unsigned int x, y, z; };

namespace shim {
inline uint3 threadIdx, blockIdx;
inline dim3 blockDim, gridDim;
}  // namespace shim
using shim::threadIdx;
using shim::blockIdx;
using shim::blockDim;
using shim::gridDim;

inline float __uint_as_float(unsigned int u) { float f; std::memcpy(&f, &u, 4); return f; }
inline unsigned int __float_as_uint(float f) { unsigned int u; std::memcpy(&u, &f, 4); return u; }
// floorf, ceilf, rintf, fmaf, fminf, fmaxf, floor, ceil: the C library's, from <math.h>.

namespace shim {
// Run kernel(args...) for every thread of the grid, in order: blocks x-fastest, threads x-fastest.
template <typename F>
void run_grid(const unsigned int grid[3], const unsigned int block[3], F&& body) {
  gridDim = dim3{grid[0], grid[1], grid[2]};
  blockDim = dim3{block[0], block[1], block[2]};
  for (unsigned int bz = 0; bz < grid[2]; ++bz)
    for (unsigned int by = 0; by < grid[1]; ++by)
      for (unsigned int bx = 0; bx < grid[0]; ++bx) {
        blockIdx = uint3{bx, by, bz};
        for (unsigned int tz = 0; tz < block[2]; ++tz)
          for (unsigned int ty = 0; ty < block[1]; ++ty)
            for (unsigned int tx = 0; tx < block[0]; ++tx) {
              threadIdx = uint3{tx, ty, tz};
              body();
            }
      }
}
}  // namespace shim
