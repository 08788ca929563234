// TVAT (MMSR paper) on the GPU: the VSP map of a frame, the thresholded VSP sum of each tile
// core, and each tile core's absolute difference to the previous frame.
// Contracts: kernels/README.md. Definition of every result: vsr_stream/ops/tvat.py.
//
// Written so the CPU harness (tests/kernels) can run it too: global memory and atomics only;
// no __syncthreads, shared memory or warp intrinsics. No #include either: NVRTC (CuPy's
// compiler) has no host headers.

namespace tvat {

// Tile rows are int32 (n, 9): tile_id, y0, x0, h, w, wy0, wx0, wh, ww. Only the core is used.
constexpr int kGeomCols = 9;

// Global thread index. 64-bit on purpose: blockIdx.x * blockDim.x is a 32-bit unsigned product.
__device__ __forceinline__ long long thread_index() {
    return (long long)blockIdx.x * blockDim.x + threadIdx.x;
}

// Pixel value on the 0-255 scale: uint16 frames are taken as value >> 8, like the reference.
template <typename T, int SHIFT>
__device__ __forceinline__ int level(const T* px, int c) {
    return (int)(px[c] >> SHIFT);
}

// One thread per pixel; it reads its 8 neighbours itself (each pair is computed twice, once
// by each side: cheaper than a second pass or atomics). Neighbours outside the frame are
// skipped, exactly the reference's border rule.
template <typename T, int SHIFT>
__device__ void vsp(const T* __restrict__ frame, long long* __restrict__ out, int h, int w) {
    long long i = thread_index();
    if (i >= (long long)h * w) return;
    int y = (int)(i / w), x = (int)(i % w);
    const T* p = frame + i * 3;
    long long sum = 0;
    for (int qy = y - 1; qy <= y + 1; ++qy) {
        for (int qx = x - 1; qx <= x + 1; ++qx) {
            if ((qy == y && qx == x) || qy < 0 || qy >= h || qx < 0 || qx >= w) continue;
            const T* q = frame + ((long long)qy * w + qx) * 3;
            for (int c = 0; c < 3; ++c) {
                int d = level<T, SHIFT>(p, c) - level<T, SHIFT>(q, c);
                sum += d * d;  // <= 255^2: int is enough per term
            }
        }
    }
    out[i] = sum;
}

// Per-tile sums: one thread per (tile, core column), flat index t * max_w + col. The thread
// walks down its column (neighbouring threads read neighbouring addresses, so loads coalesce)
// and adds its partial sum with ONE atomicAdd: w atomics per tile instead of h * w.
// Integer atomics commute, so the sums are exact and deterministic.
// The sums are unsigned long long because CUDA has no signed 64-bit atomicAdd; two's-complement
// wrap-around makes the bits equal to the signed sum, and the launcher views them as int64.
struct Column {
    bool active;  // false for threads past the end or right of a core narrower than max_w
    int tile, y0, x, h;  // x: the frame column this thread sums
};

__device__ __forceinline__ Column core_column(const int* geom, int n, int max_w) {
    long long i = thread_index();
    if (i >= (long long)n * max_w) return Column{false, 0, 0, 0, 0};
    int tile = (int)(i / max_w), col = (int)(i % max_w);
    const int* g = geom + (long long)tile * kGeomCols;
    return Column{col < g[4], tile, g[1], g[2] + col, g[3]};
}

template <typename T, int SHIFT>
__device__ void tile_absdiff(const int* __restrict__ geom, int n, int max_w, const T* __restrict__ frame,
                             const T* __restrict__ prev, int frame_w, unsigned long long* __restrict__ sums) {
    Column k = core_column(geom, n, max_w);
    if (!k.active) return;
    long long offset = ((long long)k.y0 * frame_w + k.x) * 3;
    unsigned long long sum = 0;
    for (int r = 0; r < k.h; ++r, offset += (long long)frame_w * 3) {
        for (int c = 0; c < 3; ++c) {
            int d = level<T, SHIFT>(frame + offset, c) - level<T, SHIFT>(prev + offset, c);
            sum += (unsigned long long)(d < 0 ? -d : d);
        }
    }
    atomicAdd(&sums[k.tile], sum);
}

}  // namespace tvat

// VSP of an interleaved RGB (h, w, 3) frame -> int64 (h, w). Grid: 1-D, one thread per pixel.
extern "C" __global__ void vsp_u8(const unsigned char* frame, long long* out, int h, int w) {
    tvat::vsp<unsigned char, 0>(frame, out, h, w);
}

extern "C" __global__ void vsp_u16(const unsigned short* frame, long long* out, int h, int w) {
    tvat::vsp<unsigned short, 8>(frame, out, h, w);
}

// Sum of the VSP values >= threshold inside each tile core -> sums[n] (zeroed by the caller).
// Grid: 1-D over n * max_w threads (max_w: the widest core).
extern "C" __global__ void tile_vsp_sums(const int* geom, int n, int max_w, const long long* vsp, int map_w,
                                         long long threshold, unsigned long long* sums) {
    tvat::Column k = tvat::core_column(geom, n, max_w);
    if (!k.active) return;
    const long long* p = vsp + (long long)k.y0 * map_w + k.x;
    unsigned long long sum = 0;
    for (int r = 0; r < k.h; ++r, p += map_w) {
        if (*p >= threshold) sum += (unsigned long long)*p;
    }
    atomicAdd(&sums[k.tile], sum);
}

// Sum over each tile core's pixels and channels of |frame - prev| -> sums[n] (zeroed by the
// caller). Grid: 1-D over n * max_w threads.
extern "C" __global__ void tile_absdiff_u8(const int* geom, int n, int max_w, const unsigned char* frame,
                                           const unsigned char* prev, int frame_w, unsigned long long* sums) {
    tvat::tile_absdiff<unsigned char, 0>(geom, n, max_w, frame, prev, frame_w, sums);
}

extern "C" __global__ void tile_absdiff_u16(const int* geom, int n, int max_w, const unsigned short* frame,
                                            const unsigned short* prev, int frame_w, unsigned long long* sums) {
    tvat::tile_absdiff<unsigned short, 8>(geom, n, max_w, frame, prev, frame_w, sums);
}
