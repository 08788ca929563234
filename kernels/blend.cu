// Feathered overlap blending on the GPU: weighted accumulation of a batch of upscaled tiles into
// a float32 canvas, and the normalisation acc / wsum -> integer frame.
// Contracts: kernels/README.md. Definition of every result: vsr_stream/ops/blend.py.
//
// Written so the CPU harness (tests/kernels) can run it too: global memory and atomics only;
// no __syncthreads, shared memory or warp intrinsics. No #include either: NVRTC (CuPy's
// compiler) has no host headers.

namespace blend {

constexpr int kGeomCols = 9;  // int32 rows: tile_id, y0, x0, h, w, wy0, wx0, wh, ww (LR pixels)

__device__ __forceinline__ long long thread_index() {
    return (long long)blockIdx.x * blockDim.x + threadIdx.x;  // 64-bit: the product is 32-bit unsigned
}

// feather_weights along one axis: min(d + 1, ramp) / ramp with d the distance to the nearest
// edge; ramp <= 0 gives 1. Both operands are exact floats and IEEE division is correctly
// rounded (as long as nobody adds --use_fast_math), so this is bit-identical to NumPy.
__device__ __forceinline__ float ramp_weight(int i, int length, int ramp_px) {
    if (ramp_px <= 0) return 1.0f;
    int d = min(i, length - 1 - i);
    return (float)min(d + 1, ramp_px) / (float)ramp_px;
}

// One thread per (tile, HR core pixel), flat index t * max_core_px + p; the thread adds all
// channels of its pixel. HR core of tile t: origin (y0, x0) * scale, size (h, w) * scale; it
// sits at ((y0 - wy0), (x0 - wx0)) * scale inside the tile's HR window.
template <typename T>
__device__ void accumulate(const int* __restrict__ geom, int n, int scale, int max_core_px, int ramp_px,
                           const T* __restrict__ windows, int win_h, int win_w, int channels,
                           float* __restrict__ acc, float* __restrict__ wsum, int canvas_w) {
    long long i = thread_index();
    if (i >= (long long)n * max_core_px) return;
    int t = (int)(i / max_core_px), p = (int)(i % max_core_px);
    const int* g = geom + (long long)t * kGeomCols;
    int h = g[3] * scale, w = g[4] * scale;
    if (p >= h * w) return;  // a core smaller than the largest one
    int py = p / w, px = p % w;
    long long src = (((long long)t * win_h + (g[1] - g[5]) * scale + py) * win_w + (g[2] - g[6]) * scale + px);
    long long dst = ((long long)g[1] * scale + py) * canvas_w + (long long)g[2] * scale + px;
    // Same float32 operations as the reference: value * (wy * wx), never (value * wy) * wx.
    float weight = ramp_weight(py, h, ramp_px) * ramp_weight(px, w, ramp_px);
    for (int c = 0; c < channels; ++c) {
        // Float atomics: where tiles overlap, the order of the additions (hence the last bits
        // of acc and wsum) depends on scheduling. Each product is still the reference's.
        atomicAdd(&acc[dst * channels + c], (float)windows[src * channels + c] * weight);
    }
    atomicAdd(&wsum[dst], weight);
}

// One thread per pixel: out = clip(rint(acc / wsum), 0, MAX). rintf rounds half to even, like
// numpy.rint. A pixel with !(wsum > 0) (zero, negative or NaN: no tile covered it) is written
// as 0 and counted in *uncovered; the launcher raises when the count is not zero.
template <typename T, int MAX>
__device__ void normalize(const float* __restrict__ acc, const float* __restrict__ wsum, int pixels,
                          int channels, T* __restrict__ out, unsigned int* __restrict__ uncovered) {
    long long i = thread_index();
    if (i >= pixels) return;
    float ws = wsum[i];
    bool covered = ws > 0.0f;
    if (!covered) atomicAdd(uncovered, 1u);
    for (int c = 0; c < channels; ++c) {
        float v = covered ? rintf(acc[i * channels + c] / ws) : 0.0f;
        out[i * channels + c] = (T)fminf(fmaxf(v, 0.0f), (float)MAX);
    }
}

}  // namespace blend

// Accumulate n HR windows (n, win_h, win_w, channels) into acc (H, canvas_w, channels) and wsum
// (H, canvas_w), both float32 and zeroed or partly filled by the caller.
// Grid: 1-D over n * max_core_px threads (max_core_px: the largest HR core's pixel count).
extern "C" __global__ void accumulate_u8(const int* geom, int n, int scale, int max_core_px, int ramp_px,
                                         const unsigned char* windows, int win_h, int win_w, int channels,
                                         float* acc, float* wsum, int canvas_w) {
    blend::accumulate(geom, n, scale, max_core_px, ramp_px, windows, win_h, win_w, channels, acc, wsum, canvas_w);
}

extern "C" __global__ void accumulate_u16(const int* geom, int n, int scale, int max_core_px, int ramp_px,
                                          const unsigned short* windows, int win_h, int win_w, int channels,
                                          float* acc, float* wsum, int canvas_w) {
    blend::accumulate(geom, n, scale, max_core_px, ramp_px, windows, win_h, win_w, channels, acc, wsum, canvas_w);
}

extern "C" __global__ void accumulate_f32(const int* geom, int n, int scale, int max_core_px, int ramp_px,
                                          const float* windows, int win_h, int win_w, int channels,
                                          float* acc, float* wsum, int canvas_w) {
    blend::accumulate(geom, n, scale, max_core_px, ramp_px, windows, win_h, win_w, channels, acc, wsum, canvas_w);
}

// acc (pixels, channels) / wsum (pixels) -> out (pixels, channels); *uncovered zeroed by the
// caller. Grid: 1-D, one thread per pixel.
extern "C" __global__ void normalize_u8(const float* acc, const float* wsum, int pixels, int channels,
                                        unsigned char* out, unsigned int* uncovered) {
    blend::normalize<unsigned char, 255>(acc, wsum, pixels, channels, out, uncovered);
}

extern "C" __global__ void normalize_u16(const float* acc, const float* wsum, int pixels, int channels,
                                         unsigned short* out, unsigned int* uncovered) {
    blend::normalize<unsigned short, 65535>(acc, wsum, pixels, channels, out, uncovered);
}
