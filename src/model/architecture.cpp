#include "model/architecture.hpp"

#include <cctype>

#include "core/error.hpp"

namespace eomlab {
namespace {

std::string trimmed(const std::string& s) {
  const auto begin = s.find_first_not_of(" \t\r\n");
  if (begin == std::string::npos) return "";
  return s.substr(begin, s.find_last_not_of(" \t\r\n") - begin + 1);
}

// Residual blocks nest layers; deeper than this is a mistake (and would exhaust the stack).
constexpr int max_nesting = 64;

// The pieces of `text` between the commas at parenthesis depth 0, trimmed; throws on unbalanced ones.
std::vector<std::string> top_level_pieces(const std::string& text) {
  std::vector<std::string> out;
  int depth = 0;
  std::string piece;
  for (char ch : text) {
    if (ch == '(' && ++depth > max_nesting)
      throw Error("expected parentheses nested at most " + std::to_string(max_nesting) + " deep, got more");
    if (ch == ')' && --depth < 0) throw Error("expected balanced parentheses, got '" + text + "'");
    if (ch == ',' && depth == 0) {
      out.push_back(trimmed(piece));
      piece.clear();
    } else {
      piece += ch;
    }
  }
  if (depth != 0) throw Error("expected balanced parentheses, got '" + text + "'");
  out.push_back(trimmed(piece));
  return out;
}

bool is_name(const std::string& s) {
  if (s.empty()) return false;
  for (char ch : s)
    if (!(std::islower(static_cast<unsigned char>(ch)) || std::isdigit(static_cast<unsigned char>(ch)) || ch == '_'))
      return false;
  return true;
}

}  // namespace

LayerSpec parse_layer(const std::string& raw) {
  const std::string text = trimmed(raw);
  const auto refuse = [&] { throw Error("expected NAME or NAME(ARGS), got '" + text + "'"); };
  const auto open = text.find('(');
  LayerSpec spec;
  spec.name = text.substr(0, open);
  if (!is_name(spec.name)) refuse();
  if (open == std::string::npos) return spec;
  if (text.back() != ')') refuse();
  std::vector<std::string> args;
  try {
    args = top_level_pieces(text.substr(open + 1, text.size() - open - 2));
  } catch (const Error&) {
    refuse();  // "dense(3) dense(3)": the parentheses close before the end
  }
  for (std::string& arg : args) {
    if (arg.empty()) refuse();
    // A keyword argument spaced like the items around it ("pad = 1") reads as "pad=1"; a nested layer's
    // text ("conv(8, 3, pad=1)" in a residual) is no NAME before its '=' and stays as it is.
    const auto eq = arg.find('=');
    if (eq != std::string::npos && is_name(trimmed(arg.substr(0, eq))))
      arg = trimmed(arg.substr(0, eq)) + "=" + trimmed(arg.substr(eq + 1));
    spec.args.push_back(std::move(arg));
  }
  return spec;
}

std::vector<LayerSpec> parse_architecture(const std::string& text) {
  if (trimmed(text).empty()) throw Error("expected layers, got only blanks");
  const std::vector<std::string> pieces = top_level_pieces(text);
  std::vector<LayerSpec> out;
  for (std::size_t k = 0; k < pieces.size(); ++k) {
    try {
      out.push_back(parse_layer(pieces[k]));
    } catch (const Error& e) {
      throw Error("layer " + std::to_string(k + 1) + ": " + e.what());
    }
  }
  return out;
}

}  // namespace eomlab
