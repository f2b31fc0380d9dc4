// The registry of layer kinds and loss heads: a new kind is one file in model/layers/ defining its
// factory, and one line in the list below.
#include <string_view>

#include "core/error.hpp"
#include "model/layer.hpp"

namespace eomlab {

using LayerFactory = std::unique_ptr<Layer>(const LayerSpec& spec, const Shape& in);
using LossHeadFactory = std::unique_ptr<LossHead>();

// One line per kind: the name that selects it (in an architecture, or model.loss) and its factory.
#define EOMLAB_LAYERS(X)                  \
  X("dense", make_dense)                  \
  X("conv", make_conv)                    \
  X("avgpool", make_avgpool)              \
  X("maxpool", make_maxpool)              \
  X("globalavgpool", make_globalavgpool)  \
  X("flatten", make_flatten)              \
  X("layernorm", make_layer_norm)         \
  X("tanh", make_elementwise)             \
  X("softplus", make_elementwise)         \
  X("gelu", make_elementwise)             \
  X("relu", make_elementwise)             \
  X("silu", make_elementwise)             \
  X("batchnorm", make_batch_norm)         \
  X("residual", make_residual)
#define EOMLAB_LOSS_HEADS(X)             \
  X("cross_entropy", make_cross_entropy) \
  X("mse", make_squared_error)

#define EOMLAB_DECLARE_LAYER(name, factory) LayerFactory factory;
#define EOMLAB_DECLARE_LOSS_HEAD(name, factory) LossHeadFactory factory;
#define EOMLAB_ENTRY(name, factory) {name, factory},
EOMLAB_LAYERS(EOMLAB_DECLARE_LAYER)
EOMLAB_LOSS_HEADS(EOMLAB_DECLARE_LOSS_HEAD)

namespace {

template <class Factory>
struct Entry {
  std::string_view name;
  Factory* make;
};
const Entry<LayerFactory> layers[] = {EOMLAB_LAYERS(EOMLAB_ENTRY)};
const Entry<LossHeadFactory> loss_heads[] = {EOMLAB_LOSS_HEADS(EOMLAB_ENTRY)};

template <class Factory, std::size_t n>
std::string known_names(const Entry<Factory> (&table)[n]) {
  std::string known;
  for (const Entry<Factory>& e : table) known += (known.empty() ? "" : " | ") + std::string(e.name);
  return known;
}

template <class Factory, std::size_t n>
Factory* find(const Entry<Factory> (&table)[n], const std::string& name) {
  for (const Entry<Factory>& e : table)
    if (e.name == name) return e.make;
  return nullptr;
}

}  // namespace

std::unique_ptr<Layer> make_layer(const LayerSpec& spec, const Shape& in) {
  if (LayerFactory* make = find(layers, spec.name)) return make(spec, in);
  spec.refuse("one of " + known_names(layers));
}

std::unique_ptr<LossHead> make_loss_head(const std::string& name) {
  if (LossHeadFactory* make = find(loss_heads, name)) return make();
  throw Error("loss '" + name + "': expected one of " + known_names(loss_heads));
}

}  // namespace eomlab
