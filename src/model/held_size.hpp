// What a pass of a network holds per sample, in doubles, for the memory estimate (study/memory_budget):
// the layers before the first with parameters see the data alone, so their jets hold a value and no
// directional part; the others hold as much for every jet component.
#pragma once
#include "core/types.hpp"

namespace eomlab {

struct HeldSize {
  Index value_only = 0, every_component = 0;
  Index total() const { return value_only + every_component; }
};

// Doubles per jet component of parameter size that a network keeps beside θ's own jet: each layer's own
// (kept, summed over layers) and the scratch its layers share (the largest).
struct HeldParameters {
  Index kept = 0, scratch = 0;
  Index total() const { return kept + scratch; }
};

}  // namespace eomlab
