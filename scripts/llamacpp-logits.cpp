// llama.cpp's top-32 logits at every position of each prompt: how the reference files in
// tests/data/arch/ were made (see its README.md). Not built by the project: build it against a
// llama.cpp built outside the repository, e.g. the `vendor/llama.cpp` of PyPI llama-cpp-python
// 0.3.36 built with -DBUILD_SHARED_LIBS=ON (L = that directory):
//
//   g++ -O2 -std=c++17 scripts/llamacpp-logits.cpp -I$L/include -I$L/ggml/include \
//       -L$L/build/bin -lllama -lggml -lggml-base -Wl,-rpath,$L/build/bin -o /tmp/llamacpp-logits
//   /tmp/llamacpp-logits MODEL.gguf N_CTX < ids.txt > positions.jsonl
//
// Input: one prompt per line, its token ids separated by commas. Output: one line per prompt, the
// JSON array of its positions, each {"argmax": id, "top": [[id, logit], ...]} (32 highest logits,
// ties by lower id). Per prompt a fresh context (N_CTX, n_batch = n_ubatch = 512, 2 threads, flash
// attention off, F16 cache) and one llama_decode of all the ids with logits at every position.
#include "llama.h"

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <iostream>
#include <numeric>
#include <sstream>
#include <string>
#include <vector>

int main(int argc, char ** argv) {
    if (argc != 3) {
        fprintf(stderr, "usage: %s MODEL.gguf N_CTX < ids.txt\n", argv[0]);
        return 2;
    }
    llama_backend_init();
    llama_model * model = llama_model_load_from_file(argv[1], llama_model_default_params());
    if (!model) {
        fprintf(stderr, "cannot load %s\n", argv[1]);
        return 1;
    }
    const int n_ctx = atoi(argv[2]);
    const int n_vocab = llama_vocab_n_tokens(llama_model_get_vocab(model));
    std::string line;
    while (std::getline(std::cin, line)) {
        std::vector<llama_token> ids;
        std::stringstream ss(line);
        for (std::string t; std::getline(ss, t, ',');) {
            ids.push_back(atoi(t.c_str()));
        }
        llama_context_params cp = llama_context_default_params();
        cp.n_ctx = n_ctx;
        cp.n_batch = cp.n_ubatch = 512;
        cp.n_threads = cp.n_threads_batch = 2;
        cp.flash_attn_type = LLAMA_FLASH_ATTN_TYPE_DISABLED;
        llama_context * ctx = llama_init_from_model(model, cp);
        llama_batch batch = llama_batch_init((int) ids.size(), 0, 1);
        for (size_t i = 0; i < ids.size(); i++) {
            batch.token[i] = ids[i];
            batch.pos[i] = (llama_pos) i;
            batch.n_seq_id[i] = 1;
            batch.seq_id[i][0] = 0;
            batch.logits[i] = 1;
        }
        batch.n_tokens = (int) ids.size();
        if (!ctx || llama_decode(ctx, batch) != 0) {
            fprintf(stderr, "decode failed\n");
            return 1;
        }
        std::vector<int> idx(n_vocab);
        printf("[");
        for (size_t i = 0; i < ids.size(); i++) {
            const float * l = llama_get_logits_ith(ctx, (int) i);
            std::iota(idx.begin(), idx.end(), 0);
            std::partial_sort(idx.begin(), idx.begin() + 32, idx.end(),
                              [&](int a, int b) { return l[a] > l[b] || (l[a] == l[b] && a < b); });
            printf("%s{\"argmax\": %d, \"top\": [", i ? ", " : "", idx[0]);
            for (int k = 0; k < 32; k++) {
                printf("%s[%d, %.6f]", k ? ", " : "", idx[k], l[idx[k]]);
            }
            printf("]}");
        }
        printf("]\n");
        llama_batch_free(batch);
        llama_free(ctx);
    }
    llama_model_free(model);
    return 0;
}
