// Just enough CUDA for g++ to compile kernels/*.cu and run them sequentially on the CPU
// (force-included: g++ -include cuda_emu.h). Supported: the thread-index variables, the
// qualifiers, the atomics and math the kernels use. Not supported, on purpose: __syncthreads,
// shared memory, warp intrinsics (a sequential loop cannot emulate them faithfully).
#pragma once

#include <math.h>

#include <algorithm>

#define __global__
#define __device__
#define __host__
#define __forceinline__ inline

struct uint3 {
    unsigned int x, y, z;
};
struct dim3 {
    unsigned int x = 1, y = 1, z = 1;
};

// Set by the harness's launcher before each thread body runs.
inline thread_local uint3 threadIdx, blockIdx;
inline thread_local dim3 blockDim, gridDim;

// The harness runs one thread at a time, so an atomic is a plain read-modify-write. Only the
// overloads CUDA itself has: a kernel using another type fails here as it would under nvcc.
template <typename T>
inline T emu_atomic_add(T* address, T value) {
    T old = *address;
    *address = old + value;
    return old;
}
inline int atomicAdd(int* a, int v) { return emu_atomic_add(a, v); }
inline unsigned int atomicAdd(unsigned int* a, unsigned int v) { return emu_atomic_add(a, v); }
inline unsigned long long atomicAdd(unsigned long long* a, unsigned long long v) { return emu_atomic_add(a, v); }
inline float atomicAdd(float* a, float v) { return emu_atomic_add(a, v); }
inline double atomicAdd(double* a, double v) { return emu_atomic_add(a, v); }

// CUDA's integer min/max overloads; rintf, fminf, fmaxf come from <math.h> (rintf rounds half
// to even in the default rounding mode, like the device function).
using std::max;
using std::min;
