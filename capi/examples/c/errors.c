/*
 * errors.c: every error path of ferrolm's C API, from C. Each check prints "ok" or "FAIL"; the
 * last line is "N passed, N failed" and the exit status is non-zero on any failure.
 *
 *   cc -Wall -Wextra -Werror -pthread capi/examples/c/errors.c -Icapi/include -Ltarget/release -lferrolm
 *   ./errors MODEL.gguf
 *
 * Built with -fsanitize=address,undefined in tests/capi.rs: no path may leak or crash.
 */
#define _POSIX_C_SOURCE 200809L /* mkstemp, write, unlink */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "ferrolm.h"

static int n_pass, n_fail;

static void check(int cond, const char *what, int line) {
    if (cond) {
        n_pass++;
        printf("ok   %s\n", what);
    } else {
        n_fail++;
        printf("FAIL %s (line %d): last error: %s\n", what, line, ferrolm_last_error());
    }
}
#define CHECK(cond) check((cond), #cond, __LINE__)

/* The status `call` returns, and that the thread's last error is not empty for a failure. */
#define EXPECT(call, status)                                                                     \
    do {                                                                                         \
        ferrolm_status st_ = (call);                                                             \
        check(st_ == (status), #call " == " #status, __LINE__);                                  \
        if (st_ != (status)) printf("     got %d (%s)\n", (int)st_, ferrolm_status_string(st_)); \
        if ((status) != FERROLM_OK) check(ferrolm_last_error()[0] != '\0', "  message set", __LINE__); \
    } while (0)

static int contains(const char *haystack, const char *needle) { return strstr(haystack, needle) != NULL; }

/* A temporary file with these bytes; the path is written into `path` (PATH_MAX-free: 64 bytes). */
static void temp_file(char path[64], const void *bytes, size_t len) {
    strcpy(path, "/tmp/ferrolm-errors-XXXXXX");
    int fd = mkstemp(path);
    if (fd < 0) {
        perror("mkstemp");
        exit(2);
    }
    if (len > 0 && write(fd, bytes, len) != (ssize_t)len) {
        perror("write");
        exit(2);
    }
    close(fd);
}

/* Callback that counts calls and stops after `*(int *)user_data` tokens. */
struct counter {
    int n_tokens;
    int stop_after;
    size_t n_bytes;
};
static bool count_tokens(void *user_data, ferrolm_token token, const char *text, size_t len) {
    struct counter *c = user_data;
    if (text[len] != '\0') {
        n_fail++;
        printf("FAIL callback text is not NUL-terminated\n");
    }
    c->n_bytes += len;
    if (token == FERROLM_TOKEN_NONE) return true;
    c->n_tokens++;
    return c->stop_after == 0 || c->n_tokens < c->stop_after;
}

/* Greedy generation on a context of its own, for the thread test. */
struct job {
    const ferrolm_model *model;
    char text[4096];
    size_t len;
    ferrolm_status status;
};
static bool append(void *user_data, ferrolm_token token, const char *text, size_t len) {
    (void)token;
    struct job *j = user_data;
    if (j->len + len < sizeof j->text) {
        memcpy(j->text + j->len, text, len);
        j->len += len;
        j->text[j->len] = '\0';
    }
    return true;
}
static void *greedy_job(void *arg) {
    struct job *j = arg;
    ferrolm_context *ctx = NULL;
    ferrolm_context_params cp = ferrolm_context_default_params();
    cp.n_ctx = 256;
    cp.n_threads = 1;
    j->status = ferrolm_context_new(j->model, &cp, &ctx);
    if (j->status != FERROLM_OK) return NULL;
    ferrolm_sampler_params sp = ferrolm_sampler_default_params();
    sp.temp = 0.0f;
    ferrolm_generate_params gp = ferrolm_generate_default_params();
    gp.n_predict = 12;
    j->status = ferrolm_sampler_set(ctx, &sp);
    if (j->status == FERROLM_OK) j->status = ferrolm_generate(ctx, "Once upon a time", &gp, append, j, NULL);
    ferrolm_context_free(ctx);
    return NULL;
}

int main(int argc, char **argv) {
    if (argc < 2) {
        fprintf(stderr, "usage: %s MODEL.gguf\n", argv[0]);
        return 2;
    }
    const char *model_path = argv[1];
    ferrolm_model *model = NULL;
    ferrolm_context *ctx = NULL;
    char path[64];
    char buf[256];
    size_t len = 0, n = 0;
    ferrolm_token toks[64];

    /* ---- version, status strings, free(NULL) ---- */
    CHECK(ferrolm_abi_version() == FERROLM_ABI_VERSION);
    CHECK(ferrolm_version() != NULL && ferrolm_version()[0] >= '0' && ferrolm_version()[0] <= '9');
    CHECK(strcmp(ferrolm_status_string(FERROLM_OK), "ok") == 0);
    CHECK(strcmp(ferrolm_status_string(FERROLM_BUFFER_TOO_SMALL), "buffer too small") == 0);
    CHECK(strcmp(ferrolm_status_string(-7), "unknown status") == 0);
    CHECK(strcmp(ferrolm_status_string(1000), "unknown status") == 0);
    ferrolm_model_free(NULL);
    ferrolm_context_free(NULL);
    CHECK(strcmp(ferrolm_context_error(NULL), "") == 0);
    CHECK(ferrolm_context_n_past(NULL) == 0 && ferrolm_context_n_ctx(NULL) == 0);
    CHECK(ferrolm_sampler_seed(NULL) == 0);
    CHECK(!ferrolm_token_is_eog(NULL, 0));

    /* ---- loading ---- */
    EXPECT(ferrolm_model_load(model_path, NULL, NULL), FERROLM_NULL_POINTER);
    model = (ferrolm_model *)&n; /* must be overwritten with NULL on failure */
    EXPECT(ferrolm_model_load(NULL, NULL, &model), FERROLM_NULL_POINTER);
    CHECK(model == NULL);
    EXPECT(ferrolm_model_load("/nonexistent/dir/model.gguf", NULL, &model), FERROLM_IO);
    CHECK(model == NULL);
    CHECK(contains(ferrolm_last_error(), "/nonexistent/dir/model.gguf"));
    EXPECT(ferrolm_model_load("/tmp", NULL, &model), FERROLM_IO);
    ferrolm_model_params mp = ferrolm_model_default_params();
    mp.use_mmap = false;
    EXPECT(ferrolm_model_load("/nonexistent/dir/model.gguf", &mp, &model), FERROLM_IO);

    temp_file(path, "hello, this is not a model\n", 27);
    EXPECT(ferrolm_model_load(path, NULL, &model), FERROLM_FORMAT);
    CHECK(contains(ferrolm_last_error(), "not a GGUF file"));
    CHECK(model == NULL);
    EXPECT(ferrolm_model_load(path, &mp, &model), FERROLM_FORMAT);
    unlink(path);
    temp_file(path, "", 0);
    EXPECT(ferrolm_model_load(path, NULL, &model), FERROLM_FORMAT);
    unlink(path);
    {
        /* The first 4 KiB of the real model: a GGUF header whose metadata is cut off. */
        FILE *f = fopen(model_path, "rb");
        static unsigned char head[4096];
        size_t got = f ? fread(head, 1, sizeof head, f) : 0;
        if (f) fclose(f);
        CHECK(got == sizeof head);
        temp_file(path, head, got);
        EXPECT(ferrolm_model_load(path, NULL, &model), FERROLM_FORMAT);
        CHECK(contains(ferrolm_last_error(), "truncated"));
        unlink(path);
        /* A GGUF version this reader does not know. */
        head[4] = 99;
        temp_file(path, head, 64);
        EXPECT(ferrolm_model_load(path, NULL, &model), FERROLM_UNSUPPORTED);
        unlink(path);
    }
    mp = ferrolm_model_default_params();
    mp.struct_size = 0;
    EXPECT(ferrolm_model_load(model_path, &mp, &model), FERROLM_INVALID_ARGUMENT);
    CHECK(contains(ferrolm_last_error(), "struct_size"));
    mp = ferrolm_model_default_params();
    mp.reserved[3] = 1;
    EXPECT(ferrolm_model_load(model_path, &mp, &model), FERROLM_INVALID_ARGUMENT);
    CHECK(contains(ferrolm_last_error(), "reserved"));

    /* Without mmap, then with: both load. */
    mp = ferrolm_model_default_params();
    mp.use_mmap = false;
    EXPECT(ferrolm_model_load(model_path, &mp, &model), FERROLM_OK);
    CHECK(model != NULL);
    ferrolm_model_free(model);
    model = NULL;
    EXPECT(ferrolm_model_load(model_path, NULL, &model), FERROLM_OK);
    if (model == NULL) {
        printf("%d passed, %d failed\n", n_pass, n_fail + 1);
        return 1;
    }

    /* ---- model info and metadata ---- */
    ferrolm_model_info info;
    memset(&info, 0, sizeof info);
    EXPECT(ferrolm_model_get_info(NULL, &info), FERROLM_NULL_POINTER);
    EXPECT(ferrolm_model_get_info(model, NULL), FERROLM_NULL_POINTER);
    EXPECT(ferrolm_model_get_info(model, &info), FERROLM_INVALID_ARGUMENT); /* struct_size 0 */
    info.struct_size = sizeof info;
    EXPECT(ferrolm_model_get_info(model, &info), FERROLM_OK);
    CHECK(info.struct_size == sizeof info);
    CHECK(strcmp(info.arch, "llama") == 0);
    CHECK(info.n_vocab == 49152 && info.n_layer == 30 && info.n_embd == 576);
    CHECK(info.n_ctx_train == 8192);
    CHECK(info.file_size > 1000000);
    const int32_t n_vocab = info.n_vocab;

    EXPECT(ferrolm_model_meta(model, "general.architecture", buf, sizeof buf, &len), FERROLM_OK);
    CHECK(strcmp(buf, "llama") == 0 && len == 5);
    EXPECT(ferrolm_model_meta(model, "llama.block_count", buf, sizeof buf, &len), FERROLM_OK);
    CHECK(strcmp(buf, "30") == 0);
    EXPECT(ferrolm_model_meta(model, "general.architecture", buf, 5, &len), FERROLM_BUFFER_TOO_SMALL);
    CHECK(len == 5);
    EXPECT(ferrolm_model_meta(model, "general.architecture", NULL, 0, &len), FERROLM_BUFFER_TOO_SMALL);
    CHECK(len == 5);
    EXPECT(ferrolm_model_meta(model, "no.such.key", buf, sizeof buf, &len), FERROLM_NOT_FOUND);
    EXPECT(ferrolm_model_meta(model, NULL, buf, sizeof buf, &len), FERROLM_NULL_POINTER);
    EXPECT(ferrolm_model_meta(model, "general.architecture", buf, sizeof buf, NULL), FERROLM_NULL_POINTER);
    EXPECT(ferrolm_model_meta(model, "\xff\xfe", buf, sizeof buf, &len), FERROLM_INVALID_UTF8);

    /* ---- tokenize / detokenize ---- */
    const char *hello = "Hello world";
    EXPECT(ferrolm_tokenize(NULL, hello, strlen(hello), true, true, toks, 64, &n), FERROLM_NULL_POINTER);
    EXPECT(ferrolm_tokenize(model, hello, strlen(hello), true, true, toks, 64, NULL), FERROLM_NULL_POINTER);
    EXPECT(ferrolm_tokenize(model, NULL, 5, true, true, toks, 64, &n), FERROLM_NULL_POINTER);
    EXPECT(ferrolm_tokenize(model, "abc\xc3(", 5, true, true, toks, 64, &n), FERROLM_INVALID_UTF8);
    CHECK(contains(ferrolm_last_error(), "UTF-8"));
    EXPECT(ferrolm_tokenize(model, hello, strlen(hello), true, true, NULL, 0, &n), FERROLM_BUFFER_TOO_SMALL);
    CHECK(n == 2); /* "Hello", " world"; SmolLM2 adds no BOS */
    EXPECT(ferrolm_tokenize(model, hello, strlen(hello), true, true, toks, 1, &n), FERROLM_BUFFER_TOO_SMALL);
    CHECK(n == 2);
    EXPECT(ferrolm_tokenize(model, hello, strlen(hello), true, true, toks, 64, &n), FERROLM_OK);
    CHECK(n == 2);
    EXPECT(ferrolm_tokenize(model, NULL, 0, false, true, NULL, 0, &n), FERROLM_OK);
    CHECK(n == 0);
    size_t n_hello = 2;
    EXPECT(ferrolm_tokenize(model, "<|im_start|>", 12, false, true, toks + 10, 8, &n), FERROLM_OK);
    CHECK(n == 1 && ferrolm_token_is_eog(model, toks[10]) == false);
    EXPECT(ferrolm_tokenize(model, "<|im_end|>", 10, false, true, toks + 10, 8, &n), FERROLM_OK);
    CHECK(n == 1 && ferrolm_token_is_eog(model, toks[10]));
    CHECK(!ferrolm_token_is_eog(model, -1) && !ferrolm_token_is_eog(model, n_vocab));

    EXPECT(ferrolm_detokenize(model, toks, n_hello, false, buf, sizeof buf, &len), FERROLM_OK);
    CHECK(strcmp(buf, hello) == 0 && len == strlen(hello));
    EXPECT(ferrolm_detokenize(model, toks, n_hello, false, buf, len, &len), FERROLM_BUFFER_TOO_SMALL);
    CHECK(len == strlen(hello));
    EXPECT(ferrolm_detokenize(model, toks, n_hello, false, NULL, 0, &len), FERROLM_BUFFER_TOO_SMALL);
    CHECK(len == strlen(hello));
    EXPECT(ferrolm_detokenize(model, toks, n_hello, false, NULL, 100, &len), FERROLM_NULL_POINTER);
    EXPECT(ferrolm_detokenize(model, NULL, 3, false, buf, sizeof buf, &len), FERROLM_NULL_POINTER);
    EXPECT(ferrolm_detokenize(model, NULL, 0, false, buf, sizeof buf, &len), FERROLM_OK);
    CHECK(len == 0 && buf[0] == '\0');
    ferrolm_token bad[2] = {toks[0], -1};
    EXPECT(ferrolm_detokenize(model, bad, 2, false, buf, sizeof buf, &len), FERROLM_INVALID_TOKEN);
    bad[1] = n_vocab;
    EXPECT(ferrolm_detokenize(model, bad, 2, false, buf, sizeof buf, &len), FERROLM_INVALID_TOKEN);
    CHECK(contains(ferrolm_last_error(), "49152"));
    EXPECT(ferrolm_token_to_piece(model, toks[1], false, buf, sizeof buf, &len), FERROLM_OK);
    CHECK(strcmp(buf, " world") == 0 && len == 6);
    EXPECT(ferrolm_token_to_piece(model, toks[1], false, buf, 6, &len), FERROLM_BUFFER_TOO_SMALL);
    CHECK(len == 6);
    EXPECT(ferrolm_token_to_piece(model, n_vocab, false, buf, sizeof buf, &len), FERROLM_INVALID_TOKEN);
    EXPECT(ferrolm_token_to_piece(model, 0, false, buf, sizeof buf, NULL), FERROLM_NULL_POINTER);

    /* ---- contexts ---- */
    ferrolm_context_params cp = ferrolm_context_default_params();
    EXPECT(ferrolm_context_new(NULL, &cp, &ctx), FERROLM_NULL_POINTER);
    EXPECT(ferrolm_context_new(model, &cp, NULL), FERROLM_NULL_POINTER);
    cp.kv_type = 4; /* between Q4_1 (3) and Q5_0 (6): no such type */
    EXPECT(ferrolm_context_new(model, &cp, &ctx), FERROLM_INVALID_ARGUMENT);
    CHECK(ctx == NULL && contains(ferrolm_last_error(), "kv_type"));
    cp = ferrolm_context_default_params();
    cp.n_threads = -2;
    EXPECT(ferrolm_context_new(model, &cp, &ctx), FERROLM_INVALID_ARGUMENT);
    cp = ferrolm_context_default_params();
    cp.n_ctx = 1u << 24;
    EXPECT(ferrolm_context_new(model, &cp, &ctx), FERROLM_INVALID_ARGUMENT);
    cp = ferrolm_context_default_params();
    cp.struct_size = 8;
    EXPECT(ferrolm_context_new(model, &cp, &ctx), FERROLM_INVALID_ARGUMENT);
    /* A caller built against a newer header (a larger struct) is accepted. */
    struct {
        ferrolm_context_params p;
        uint64_t newer_field;
    } bigger;
    bigger.p = ferrolm_context_default_params();
    bigger.p.struct_size = sizeof bigger;
    bigger.p.n_ctx = 64;
    bigger.newer_field = 0;
    EXPECT(ferrolm_context_new(model, &bigger.p, &ctx), FERROLM_OK);
    CHECK(ferrolm_context_n_ctx(ctx) == 64);
    ferrolm_context_free(ctx);
    ctx = NULL;

    cp = ferrolm_context_default_params();
    cp.n_ctx = 16;
    cp.kv_type = FERROLM_KV_Q8_0;
    EXPECT(ferrolm_context_new(model, &cp, &ctx), FERROLM_OK);
    if (ctx == NULL) {
        ferrolm_model_free(model);
        printf("%d passed, %d failed\n", n_pass, n_fail + 1);
        return 1;
    }
    CHECK(ferrolm_context_n_ctx(ctx) == 16 && ferrolm_context_n_past(ctx) == 0);
    const float *logits = NULL;
    size_t nv = 0;
    ferrolm_token next = 0;
    EXPECT(ferrolm_get_logits(ctx, &logits, &nv), FERROLM_NO_LOGITS);
    CHECK(contains(ferrolm_context_error(ctx), "no logits"));
    EXPECT(ferrolm_sample(ctx, &next), FERROLM_NO_LOGITS);
    EXPECT(ferrolm_get_logits(NULL, &logits, &nv), FERROLM_NULL_POINTER);
    EXPECT(ferrolm_get_logits(ctx, NULL, &nv), FERROLM_NULL_POINTER);
    EXPECT(ferrolm_sample(ctx, NULL), FERROLM_NULL_POINTER);
    EXPECT(ferrolm_eval(NULL, toks, 1), FERROLM_NULL_POINTER);
    EXPECT(ferrolm_eval(ctx, NULL, 1), FERROLM_NULL_POINTER);
    EXPECT(ferrolm_eval(ctx, bad, 2), FERROLM_INVALID_TOKEN);
    CHECK(contains(ferrolm_context_error(ctx), "outside the vocabulary"));
    CHECK(ferrolm_context_n_past(ctx) == 0);
    ferrolm_token many[17];
    for (int i = 0; i < 17; i++) many[i] = toks[0];
    EXPECT(ferrolm_eval(ctx, many, 17), FERROLM_CONTEXT_FULL);
    CHECK(ferrolm_context_n_past(ctx) == 0);
    EXPECT(ferrolm_eval(ctx, NULL, 0), FERROLM_OK);
    CHECK(strcmp(ferrolm_context_error(ctx), "") == 0); /* cleared by a successful call */
    EXPECT(ferrolm_eval(ctx, toks, n_hello), FERROLM_OK);
    CHECK(ferrolm_context_n_past(ctx) == 2);
    EXPECT(ferrolm_get_logits(ctx, &logits, &nv), FERROLM_OK);
    CHECK(logits != NULL && nv == (size_t)n_vocab);
    EXPECT(ferrolm_sample(ctx, &next), FERROLM_OK);
    CHECK(next >= 0 && next < n_vocab);
    EXPECT(ferrolm_eval(ctx, many, 15), FERROLM_CONTEXT_FULL); /* 2 + 15 > 16 */
    EXPECT(ferrolm_context_truncate(ctx, 1), FERROLM_OK);
    CHECK(ferrolm_context_n_past(ctx) == 1);
    EXPECT(ferrolm_sample(ctx, &next), FERROLM_NO_LOGITS); /* truncation dropped them */
    EXPECT(ferrolm_context_truncate(ctx, 100), FERROLM_OK);
    CHECK(ferrolm_context_n_past(ctx) == 1);
    EXPECT(ferrolm_context_reset(ctx), FERROLM_OK);
    CHECK(ferrolm_context_n_past(ctx) == 0);
    EXPECT(ferrolm_context_reset(NULL), FERROLM_NULL_POINTER);

    /* ---- sampler ---- */
    ferrolm_sampler_params sp = ferrolm_sampler_default_params();
    sp.temp = -1.0f;
    EXPECT(ferrolm_sampler_set(ctx, &sp), FERROLM_INVALID_ARGUMENT);
    CHECK(contains(ferrolm_context_error(ctx), "temp"));
    sp = ferrolm_sampler_default_params();
    sp.top_p = 1.5f;
    EXPECT(ferrolm_sampler_set(ctx, &sp), FERROLM_INVALID_ARGUMENT);
    sp = ferrolm_sampler_default_params();
    sp.min_p = 0.0f / 0.0f;
    EXPECT(ferrolm_sampler_set(ctx, &sp), FERROLM_INVALID_ARGUMENT);
    sp = ferrolm_sampler_default_params();
    sp.repeat_last_n = -1;
    EXPECT(ferrolm_sampler_set(ctx, &sp), FERROLM_INVALID_ARGUMENT);
    sp = ferrolm_sampler_default_params();
    sp.struct_size = 0;
    EXPECT(ferrolm_sampler_set(ctx, &sp), FERROLM_INVALID_ARGUMENT);
    sp = ferrolm_sampler_default_params();
    sp.seed = 1234;
    EXPECT(ferrolm_sampler_set(ctx, &sp), FERROLM_OK);
    CHECK(ferrolm_sampler_seed(ctx) == 1234);
    EXPECT(ferrolm_sampler_set(ctx, NULL), FERROLM_OK); /* defaults: a seed from the clock */
    EXPECT(ferrolm_sampler_accept(ctx, bad, 2), FERROLM_INVALID_TOKEN);
    EXPECT(ferrolm_sampler_accept(ctx, toks, n_hello), FERROLM_OK);

    /* ---- generate ---- */
    ferrolm_generate_params gp = ferrolm_generate_default_params();
    ferrolm_generate_stats stats;
    memset(&stats, 0, sizeof stats);
    struct counter counter = {0, 0, 0};
    EXPECT(ferrolm_generate(NULL, "Hi", &gp, count_tokens, &counter, NULL), FERROLM_NULL_POINTER);
    EXPECT(ferrolm_generate(ctx, NULL, &gp, count_tokens, &counter, NULL), FERROLM_NULL_POINTER);
    EXPECT(ferrolm_generate(ctx, "caf\xe9", &gp, count_tokens, &counter, NULL), FERROLM_INVALID_UTF8);
    EXPECT(ferrolm_generate(ctx, "", &gp, count_tokens, &counter, NULL), FERROLM_NO_LOGITS);
    EXPECT(ferrolm_generate(ctx, "Hi", &gp, count_tokens, &counter, &stats), FERROLM_INVALID_ARGUMENT);
    CHECK(contains(ferrolm_context_error(ctx), "struct_size"));
    const char *stops_bad[2] = {"\n", NULL};
    gp.stop = stops_bad;
    gp.n_stop = 2;
    EXPECT(ferrolm_generate(ctx, "Hi", &gp, count_tokens, &counter, NULL), FERROLM_NULL_POINTER);
    gp = ferrolm_generate_default_params();
    gp.reserved = 1;
    EXPECT(ferrolm_generate(ctx, "Hi", &gp, count_tokens, &counter, NULL), FERROLM_INVALID_ARGUMENT);
    gp = ferrolm_generate_default_params();
    gp.n_predict = -5;
    EXPECT(ferrolm_generate(ctx, "Hi", &gp, count_tokens, &counter, NULL), FERROLM_INVALID_ARGUMENT);
    gp = ferrolm_generate_default_params();
    EXPECT(ferrolm_generate(ctx, "one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen sixteen "
                            "seventeen eighteen nineteen twenty", &gp,
                            count_tokens, &counter, NULL),
           FERROLM_CONTEXT_FULL);
    CHECK(counter.n_tokens == 0 && ferrolm_context_n_past(ctx) == 0);
    EXPECT(ferrolm_generate_tokens(ctx, bad, 2, &gp, count_tokens, &counter, NULL), FERROLM_INVALID_TOKEN);

    /* The context fills during generation: a stop reason, not an error. */
    stats.struct_size = sizeof stats;
    EXPECT(ferrolm_generate(ctx, "Hi", &gp, count_tokens, &counter, &stats), FERROLM_OK);
    CHECK(stats.stop_reason == FERROLM_STOP_CONTEXT_FULL || stats.stop_reason == FERROLM_STOP_EOG);
    CHECK(stats.struct_size == sizeof stats && stats.n_prompt == 1);
    CHECK(ferrolm_context_n_past(ctx) <= 16);
    EXPECT(ferrolm_context_reset(ctx), FERROLM_OK);

    /* The callback stops generation. */
    counter = (struct counter){0, 3, 0};
    gp.n_predict = 10;
    EXPECT(ferrolm_generate(ctx, "Hi", &gp, count_tokens, &counter, &stats), FERROLM_OK);
    CHECK(stats.stop_reason == FERROLM_STOP_CALLBACK || stats.stop_reason == FERROLM_STOP_EOG);
    CHECK(counter.n_tokens <= 3 && stats.n_gen <= 3);
    /* ... and it continues from where it stopped (an empty prompt uses the last logits). */
    counter = (struct counter){0, 0, 0};
    gp.n_predict = 2;
    size_t before = ferrolm_context_n_past(ctx);
    EXPECT(ferrolm_generate(ctx, "", &gp, count_tokens, &counter, &stats), FERROLM_OK);
    CHECK(ferrolm_context_n_past(ctx) >= before);
    EXPECT(ferrolm_generate(ctx, "", &gp, NULL, NULL, NULL), FERROLM_OK); /* no callback */
    ferrolm_context_free(ctx);
    ctx = NULL;

    /* ---- sharing one model between threads; freeing the model before its contexts ---- */
    struct job jobs[2];
    pthread_t threads[2];
    for (int i = 0; i < 2; i++) {
        memset(&jobs[i], 0, sizeof jobs[i]);
        jobs[i].model = model;
        CHECK(pthread_create(&threads[i], NULL, greedy_job, &jobs[i]) == 0);
    }
    for (int i = 0; i < 2; i++) pthread_join(threads[i], NULL);
    CHECK(jobs[0].status == FERROLM_OK && jobs[1].status == FERROLM_OK);
    CHECK(jobs[0].len > 0 && strcmp(jobs[0].text, jobs[1].text) == 0);

    cp = ferrolm_context_default_params();
    cp.n_ctx = 64;
    EXPECT(ferrolm_context_new(model, &cp, &ctx), FERROLM_OK);
    ferrolm_model_free(model);
    model = NULL;
    sp = ferrolm_sampler_default_params();
    sp.temp = 0.0f;
    EXPECT(ferrolm_sampler_set(ctx, &sp), FERROLM_OK);
    struct job again;
    memset(&again, 0, sizeof again);
    gp = ferrolm_generate_default_params();
    gp.n_predict = 12;
    EXPECT(ferrolm_generate(ctx, "Once upon a time", &gp, append, &again, NULL), FERROLM_OK);
    CHECK(strcmp(again.text, jobs[0].text) == 0);
    /* A stop string ends generation; the text before it is delivered. */
    if (strlen(again.text) > 4) {
        char stop[3] = {again.text[2], again.text[3], '\0'};
        const char *stops[1] = {stop};
        EXPECT(ferrolm_context_reset(ctx), FERROLM_OK);
        gp.stop = stops;
        gp.n_stop = 1;
        struct job cut;
        memset(&cut, 0, sizeof cut);
        stats.struct_size = sizeof stats;
        EXPECT(ferrolm_generate(ctx, "Once upon a time", &gp, append, &cut, &stats), FERROLM_OK);
        CHECK(stats.stop_reason == FERROLM_STOP_STRING);
        CHECK(strstr(again.text, stop) != NULL && strncmp(cut.text, again.text, cut.len) == 0 &&
              cut.len == (size_t)(strstr(again.text, stop) - again.text));
    }
    ferrolm_context_free(ctx);

    printf("%d passed, %d failed\n", n_pass, n_fail);
    return n_fail == 0 ? 0 : 1;
}
