// CPU launcher for the CUDA kernels in kernels/*.cu (compiled with -include cuda_emu.h).
//
//   harness --list                          print every kernel name, one a line
//   harness SEED KERNEL GX BX ARG...        run KERNEL over a 1-D grid of GX blocks of BX threads
//
// ARG is CODE:PATH for a device buffer (raw bytes, read before the launch and written back
// after it) or CODE=VALUE for a scalar; CODE is the numpy type code (u1 u2 u4 u8 i4 i8 f4).
// Each argument is checked against the kernel's own C signature, so a launcher passing an
// int64 where the kernel takes int fails here instead of reading garbage on a GPU.
// Blocks run one after another; SEED != 0 runs them in a shuffled order, because a GPU gives
// no order either and float atomics make the result depend on it. Exit code 2: bad usage.
#include <cstdio>
#include <cstring>
#include <fstream>
#include <functional>
#include <map>
#include <numeric>
#include <random>
#include <stdexcept>
#include <string>
#include <tuple>
#include <type_traits>
#include <utility>
#include <vector>

#include "blend.cu"
#include "tvat.cu"

namespace {

template <typename T> const char* code();
template <> const char* code<unsigned char>() { return "u1"; }
template <> const char* code<unsigned short>() { return "u2"; }
template <> const char* code<unsigned int>() { return "u4"; }
template <> const char* code<unsigned long long>() { return "u8"; }
template <> const char* code<int>() { return "i4"; }
template <> const char* code<long long>() { return "i8"; }
template <> const char* code<float>() { return "f4"; }

struct Arg {
    std::string code, path, text;  // path for a buffer, text for a scalar
    std::vector<char> bytes;        // exactly the file's size: AddressSanitizer sees overruns
};

struct Args {
    std::vector<Arg> items;

    Arg& at(size_t i, const char* expected, bool buffer) {
        Arg& a = items.at(i);
        if (a.code != expected || a.path.empty() != !buffer) {
            throw std::runtime_error("argument " + std::to_string(i) + ": kernel expects " +
                                     (buffer ? "buffer " : "scalar ") + expected + ", got " + a.code +
                                     (a.path.empty() ? " scalar" : " buffer"));
        }
        return a;
    }

    template <typename P>
    P get(size_t i) {
        if constexpr (std::is_pointer_v<P>) {
            using T = std::remove_const_t<std::remove_pointer_t<P>>;
            return reinterpret_cast<P>(at(i, code<T>(), true).bytes.data());
        } else if constexpr (std::is_floating_point_v<P>) {
            return static_cast<P>(std::stod(at(i, code<P>(), false).text));
        } else {
            return static_cast<P>(std::stoll(at(i, code<P>(), false).text));
        }
    }
};

using Launch = std::function<void(Args&, unsigned seed)>;

template <typename... P, size_t... I>
std::tuple<P...> bind_args(Args& args, std::index_sequence<I...>) {
    return std::tuple<P...>(args.get<P>(I)...);
}

// A launcher for `kernel`: converts the arguments to its parameter types once, then runs the
// body for every thread of every block.
template <typename... P>
Launch launcher(void (*kernel)(P...)) {
    return [kernel](Args& args, unsigned seed) {
        if (args.items.size() != sizeof...(P)) {
            throw std::runtime_error("kernel takes " + std::to_string(sizeof...(P)) + " arguments, got " +
                                     std::to_string(args.items.size()));
        }
        std::tuple<P...> bound = bind_args<P...>(args, std::index_sequence_for<P...>{});
        std::vector<unsigned int> blocks(gridDim.x);
        std::iota(blocks.begin(), blocks.end(), 0u);
        if (seed != 0) std::shuffle(blocks.begin(), blocks.end(), std::mt19937(seed));
        for (unsigned int b : blocks) {
            blockIdx = uint3{b, 0, 0};
            for (unsigned int t = 0; t < blockDim.x; ++t) {
                threadIdx = uint3{t, 0, 0};
                std::apply(kernel, bound);
            }
        }
    };
}

const std::map<std::string, Launch> kKernels = {
    {"vsp_u8", launcher(vsp_u8)},
    {"vsp_u16", launcher(vsp_u16)},
    {"tile_vsp_sums", launcher(tile_vsp_sums)},
    {"tile_absdiff_u8", launcher(tile_absdiff_u8)},
    {"tile_absdiff_u16", launcher(tile_absdiff_u16)},
    {"accumulate_u8", launcher(accumulate_u8)},
    {"accumulate_u16", launcher(accumulate_u16)},
    {"accumulate_f32", launcher(accumulate_f32)},
    {"normalize_u8", launcher(normalize_u8)},
    {"normalize_u16", launcher(normalize_u16)},
};

Arg parse(const std::string& spec) {
    Arg a;
    size_t colon = spec.find(':'), equals = spec.find('=');
    if (colon == 2) {
        a.code = spec.substr(0, 2);
        a.path = spec.substr(3);
        std::ifstream in(a.path, std::ios::binary);
        if (!in) throw std::runtime_error("cannot read " + a.path);
        a.bytes.assign(std::istreambuf_iterator<char>(in), {});
    } else if (equals == 2) {
        a.code = spec.substr(0, 2);
        a.text = spec.substr(3);
    } else {
        throw std::runtime_error("bad argument '" + spec + "': expected CODE:PATH or CODE=VALUE");
    }
    return a;
}

}  // namespace

int main(int argc, char** argv) {
    if (argc == 2 && std::strcmp(argv[1], "--list") == 0) {
        for (const auto& [name, _] : kKernels) std::printf("%s\n", name.c_str());
        return 0;
    }
    try {
        if (argc < 5) throw std::runtime_error("usage: harness SEED KERNEL GX BX ARG...");
        auto kernel = kKernels.find(argv[2]);
        if (kernel == kKernels.end()) throw std::runtime_error(std::string("unknown kernel ") + argv[2]);
        gridDim = dim3{static_cast<unsigned>(std::stoul(argv[3])), 1, 1};
        blockDim = dim3{static_cast<unsigned>(std::stoul(argv[4])), 1, 1};
        Args args;
        for (int i = 5; i < argc; ++i) args.items.push_back(parse(argv[i]));
        kernel->second(args, static_cast<unsigned>(std::stoul(argv[1])));
        for (const Arg& a : args.items) {
            if (a.path.empty()) continue;
            std::ofstream out(a.path, std::ios::binary | std::ios::trunc);
            out.write(a.bytes.data(), static_cast<std::streamsize>(a.bytes.size()));
        }
    } catch (const std::exception& e) {
        std::fprintf(stderr, "harness: %s\n", e.what());
        return 2;
    }
    return 0;
}
