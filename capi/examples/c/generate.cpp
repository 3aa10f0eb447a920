// generate.cpp: ferrolm's C API from C++, with RAII handles. Greedy generation into a
// std::string, a lambda as the callback (through user_data), tokens/s on stderr.
//
//   c++ -std=c++17 -Wall -Wextra -O2 capi/examples/c/generate.cpp $(pkg-config --cflags --libs ferrolm)
//   ./a.out [MODEL] [PROMPT] [N]
#include <cstdio>
#include <cstdlib>
#include <functional>
#include <memory>
#include <stdexcept>
#include <string>

#include "ferrolm.h"

namespace {

struct ModelDeleter {
    void operator()(ferrolm_model *m) const { ferrolm_model_free(m); }
};
struct ContextDeleter {
    void operator()(ferrolm_context *c) const { ferrolm_context_free(c); }
};
using Model = std::unique_ptr<ferrolm_model, ModelDeleter>;
using Context = std::unique_ptr<ferrolm_context, ContextDeleter>;

// Turn a failed status into an exception carrying ferrolm's message.
void check(ferrolm_status st, const char *what, const ferrolm_context *ctx = nullptr) {
    if (st != FERROLM_OK) {
        const char *msg = ctx ? ferrolm_context_error(ctx) : ferrolm_last_error();
        throw std::runtime_error(std::string(what) + ": " + ferrolm_status_string(st) + ": " + msg);
    }
}

Model load(const char *path) {
    ferrolm_model *m = nullptr;
    check(ferrolm_model_load(path, nullptr, &m), "load");
    return Model(m);
}

using OnText = std::function<bool(const std::string &)>;

}  // namespace

// The C callback: forwards each piece to the std::function in user_data. Never throws into C.
extern "C" {
static bool forward(void *user_data, ferrolm_token, const char *text, size_t len) {
    auto *f = static_cast<OnText *>(user_data);
    try {
        return (*f)(std::string(text, len));
    } catch (...) {
        return false;
    }
}
}

int main(int argc, char **argv) {
    const char *env = std::getenv("FERROLM_MODEL");
    const char *path = argc > 1 ? argv[1] : env ? env : "models/SmolLM2-135M-Instruct.Q4_1.gguf";
    const char *prompt = argc > 2 ? argv[2] : "The capital of France is";
    int n = argc > 3 ? std::atoi(argv[3]) : 32;
    try {
        Model model = load(path);
        ferrolm_context *raw = nullptr;
        check(ferrolm_context_new(model.get(), nullptr, &raw), "context");
        Context ctx(raw);
        model.reset();  // the context keeps the weights alive

        ferrolm_sampler_params sp = ferrolm_sampler_default_params();
        sp.temp = 0.0f;  // greedy
        check(ferrolm_sampler_set(ctx.get(), &sp), "sampler", ctx.get());

        ferrolm_generate_params gp = ferrolm_generate_default_params();
        gp.n_predict = n;
        std::string text;
        OnText on_text = [&text](const std::string &piece) {
            text += piece;
            return true;
        };
        ferrolm_generate_stats stats{};
        stats.struct_size = sizeof stats;
        check(ferrolm_generate(ctx.get(), prompt, &gp, forward, &on_text, &stats), "generate", ctx.get());

        std::fwrite(text.data(), 1, text.size(), stdout);
        std::fprintf(stderr, "\n%llu tokens, %.1f tokens/s\n", static_cast<unsigned long long>(stats.n_gen),
                     stats.gen_ms > 0 ? static_cast<double>(stats.n_gen) * 1e3 / stats.gen_ms : 0.0);
    } catch (const std::exception &e) {
        std::fprintf(stderr, "error: %s\n", e.what());
        return 1;
    }
    return 0;
}
