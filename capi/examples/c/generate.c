/*
 * generate.c: load a GGUF model through ferrolm's C API, generate text with a per-token callback
 * and print tokens/s.
 *
 *   cc -Wall -Wextra -O2 capi/examples/c/generate.c $(pkg-config --cflags --libs ferrolm) -o generate
 *   ./generate [-m MODEL] [-p PROMPT] [-n N] [-s SEED] [-t THREADS] [--temp T] [--stop-after K]
 *
 * The generated text, and only it, goes to stdout: for the same prompt, -n and seed it is the
 * text `ferrolm run -p PROMPT -n N --seed SEED` prints. Statistics go to stderr. --stop-after K
 * makes the callback ask to stop after K tokens.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ferrolm.h"

/* What the callback keeps between calls. */
struct stream {
    size_t n_tokens;   /* tokens seen */
    size_t n_bytes;    /* text bytes printed */
    size_t stop_after; /* 0 = never ask to stop */
};

/* Print each piece of text as it comes; ask to stop after `stop_after` tokens. */
static bool on_token(void *user_data, ferrolm_token token, const char *text, size_t text_len) {
    struct stream *s = user_data;
    if (text_len > 0) {
        fwrite(text, 1, text_len, stdout);
        fflush(stdout);
        s->n_bytes += text_len;
    }
    if (token == FERROLM_TOKEN_NONE) {
        return true; /* the text held back after the last token */
    }
    s->n_tokens += 1;
    return s->stop_after == 0 || s->n_tokens < s->stop_after;
}

static int fail(const char *what, ferrolm_status st, ferrolm_context *ctx) {
    const char *msg = ctx ? ferrolm_context_error(ctx) : ferrolm_last_error();
    fprintf(stderr, "error: %s: %s: %s\n", what, ferrolm_status_string(st), msg);
    return 1;
}

static int parse_u64(const char *flag, const char *s, unsigned long long *out) {
    char *end = NULL;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 10);
    if (errno != 0 || end == s || *end != '\0' || s[0] == '-') {
        fprintf(stderr, "error: %s expects a non-negative integer, got '%s'\n", flag, s);
        return -1;
    }
    *out = v;
    return 0;
}

int main(int argc, char **argv) {
    const char *model_path = getenv("FERROLM_MODEL");
    if (model_path == NULL) {
        model_path = "models/SmolLM2-135M-Instruct.Q4_1.gguf";
    }
    const char *prompt = "The capital of France is";
    long long n_predict = 64;
    unsigned long long seed = 42, threads = 0, stop_after = 0;
    double temp = -1.0; /* -1 = the library's default */

    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        unsigned long long u = 0;
        if (v == NULL) {
            fprintf(stderr, "usage: %s [-m MODEL] [-p PROMPT] [-n N] [-s SEED] [-t THREADS] [--temp T] [--stop-after K]\n",
                    argv[0]);
            return 2;
        }
        if (strcmp(a, "-m") == 0) {
            model_path = v;
        } else if (strcmp(a, "-p") == 0) {
            prompt = v;
        } else if (strcmp(a, "-n") == 0) {
            if (strcmp(v, "-1") == 0) {
                n_predict = -1;
            } else if (parse_u64(a, v, &u) != 0 || u > 0x7fffffff) {
                return 2;
            } else {
                n_predict = (long long)u;
            }
        } else if (strcmp(a, "-s") == 0 || strcmp(a, "--seed") == 0) {
            if (parse_u64(a, v, &seed) != 0) return 2;
        } else if (strcmp(a, "-t") == 0) {
            if (parse_u64(a, v, &threads) != 0 || threads > 512) return 2;
        } else if (strcmp(a, "--temp") == 0) {
            char *end = NULL;
            temp = strtod(v, &end);
            if (end == v || *end != '\0' || !(temp >= 0.0)) {
                fprintf(stderr, "error: --temp expects a number >= 0, got '%s'\n", v);
                return 2;
            }
        } else if (strcmp(a, "--stop-after") == 0) {
            if (parse_u64(a, v, &stop_after) != 0) return 2;
        } else {
            fprintf(stderr, "error: unknown argument '%s'\n", a);
            return 2;
        }
        i++;
    }

    if (ferrolm_abi_version() != FERROLM_ABI_VERSION) {
        fprintf(stderr, "error: libferrolm has ABI %u, this program was built for %u\n", ferrolm_abi_version(),
                FERROLM_ABI_VERSION);
        return 1;
    }

    int rc = 0;
    ferrolm_model *model = NULL;
    ferrolm_context *ctx = NULL;
    ferrolm_status st;

    ferrolm_model_params mp = ferrolm_model_default_params();
    st = ferrolm_model_load(model_path, &mp, &model);
    if (st != FERROLM_OK) {
        return fail("loading the model", st, NULL);
    }

    ferrolm_model_info info;
    info.struct_size = sizeof info;
    st = ferrolm_model_get_info(model, &info);
    if (st != FERROLM_OK) {
        rc = fail("model info", st, NULL);
        goto out;
    }
    fprintf(stderr, "ferrolm %s: %s '%s', %d layers, vocabulary %d, %.1f MB\n", ferrolm_version(), info.arch, info.name,
            info.n_layer, info.n_vocab, (double)info.file_size / 1e6);

    ferrolm_context_params cp = ferrolm_context_default_params();
    cp.n_threads = (int32_t)threads;
    st = ferrolm_context_new(model, &cp, &ctx);
    if (st != FERROLM_OK) {
        rc = fail("creating a context", st, NULL);
        goto out;
    }

    ferrolm_sampler_params sp = ferrolm_sampler_default_params();
    sp.seed = seed;
    if (temp >= 0.0) {
        sp.temp = (float)temp;
    }
    st = ferrolm_sampler_set(ctx, &sp);
    if (st != FERROLM_OK) {
        rc = fail("sampler parameters", st, ctx);
        goto out;
    }

    ferrolm_generate_params gp = ferrolm_generate_default_params();
    gp.n_predict = (int32_t)n_predict;
    struct stream s = {0, 0, (size_t)stop_after};
    ferrolm_generate_stats stats;
    stats.struct_size = sizeof stats;
    st = ferrolm_generate(ctx, prompt, &gp, on_token, &s, &stats);
    if (st != FERROLM_OK) {
        rc = fail("generating", st, ctx);
        goto out;
    }

    static const char *const reasons[] = {"end of generation", "max tokens", "stop string", "callback", "context full"};
    unsigned reason = (unsigned)stats.stop_reason;
    fprintf(stderr, "\nprompt: %llu tokens, %.1f tokens/s | generation: %llu tokens, %.1f tokens/s | stop: %s | seed %llu | %zu threads\n",
            (unsigned long long)stats.n_prompt, stats.prompt_ms > 0 ? (double)stats.n_prompt * 1e3 / stats.prompt_ms : 0.0,
            (unsigned long long)stats.n_gen, stats.gen_ms > 0 ? (double)stats.n_gen * 1e3 / stats.gen_ms : 0.0,
            reason < sizeof reasons / sizeof reasons[0] ? reasons[reason] : "?",
            (unsigned long long)ferrolm_sampler_seed(ctx), ferrolm_context_n_threads(ctx));

out:
    ferrolm_context_free(ctx);
    ferrolm_model_free(model);
    return rc;
}
