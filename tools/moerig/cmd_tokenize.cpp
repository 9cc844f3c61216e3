// `moerig tokenize -m model.gguf -p TEXT [--json] [--no-bos] [--no-special]`: the model's token ids for a
// text, exactly as llama.cpp's tokenizer gives them, with each token's piece.
#include <cstdio>
#include <nlohmann/json.hpp>
#include <string>

#include "formats/gguf.h"
#include "kernels/error.h"
#include "runtime/tokenizer.h"
#include "runtime/utf8_stream.h"
#include "tools/moerig/command.h"

namespace moerig::cli {
namespace {

struct TokenizeArgs {
    std::string model;
    std::string prompt;
    bool json = false;
    bool no_bos = false;
    bool no_special = false;
};

// A piece for people: control characters escaped, and every non-ASCII byte too when the piece is only part of
// a UTF-8 character (byte tokens, split emoji).
std::string printable(const std::string& piece) {
    const bool whole = runtime::is_whole_utf8(piece);
    std::string out;
    for (unsigned char c : piece) {
        if (c == '\n')
            out += "\\n";
        else if (c == '\t')
            out += "\\t";
        else if (c == '\r')
            out += "\\r";
        else if (c < 0x20 || c == 0x7F || (c >= 0x80 && !whole))
            out += fmt::format("\\x{:02x}", c);
        else
            out.push_back(static_cast<char>(c));
    }
    return out;
}

int run_tokenize(const TokenizeArgs& a) {
    const formats::GgufModel model(a.model);
    const runtime::Tokenizer tok = runtime::Tokenizer::from_gguf(model);
    const std::vector<int32_t> ids = tok.encode(a.prompt, !a.no_bos, !a.no_special);
    if (a.json) {
        nlohmann::json pieces = nlohmann::json::array();
        for (int32_t id : ids) pieces.push_back(tok.token_to_piece(id));
        const nlohmann::json j = {{"model", a.model}, {"ids", ids}, {"pieces", pieces}, {"count", ids.size()}};
        std::puts(j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace).c_str());
        return 0;
    }
    for (int32_t id : ids) fmt::print("{:>8} '{}'\n", id, printable(tok.token_to_piece(id)));
    fmt::print("{} tokens: [", ids.size());
    for (size_t i = 0; i < ids.size(); ++i) fmt::print("{}{}", i ? ", " : "", ids[i]);
    fmt::print("]\n");
    return 0;
}

const Registrar kTokenize(
    "tokenize", "print a text's token ids (and pieces) under a model's tokenizer",
    [](CLI::App& sub) {
        auto a = std::make_shared<TokenizeArgs>();
        sub.add_option("-m,--model", a->model, "GGUF model (or vocab-only GGUF) file")
            ->required()
            ->check(CLI::ExistingFile);
        sub.add_option("-p,--prompt", a->prompt, "text to tokenize")->required();
        sub.add_flag("--json", a->json, "print JSON");
        sub.add_flag("--no-bos", a->no_bos, "do not add BOS/EOS by the model's rules");
        sub.add_flag("--no-special", a->no_special, "do not match control tokens' text (e.g. <|im_start|>)");
        return [a] { return run_tokenize(*a); };
    },
    61);

}  // namespace
}  // namespace moerig::cli
