// A name → factory table: how a new method, flow or observable joins eomlab (DESIGN.md §2.6).
// Each kind is one file defining a factory and one line in flow/registrations.cpp (or, for code outside
// the library such as a test, one call to add() before the study starts).
// Invariant: names are unique; the order of names() is the order of registration.
#pragma once
#include <functional>
#include <string>
#include <utility>
#include <vector>

#include "core/error.hpp"
#include "core/words.hpp"

namespace eomlab {

template <class Factory>
class Registry {
 public:
  explicit Registry(std::string what) : what_(std::move(what)) {}

  // Names are words (a letter, then letters, digits and '_'): they become HDF5 group names, config list
  // items and table columns.
  void add(const std::string& name, Factory factory, std::string description = "") {
    if (!is_word(name))
      throw Error(what_ + " registry: expected a name of a letter, then letters, digits and '_', got '" + name + "'");
    if (find(name)) throw Error(what_ + " registry: '" + name + "' is registered twice");
    entries_.push_back({name, std::move(factory), std::move(description)});
  }
  bool contains(const std::string& name) const { return find(name) != nullptr; }
  // The factory of `name`; throws an Error listing the registered names when there is none.
  const Factory& at(const std::string& name) const {
    if (const Entry* e = find(name)) return e->factory;
    throw Error("expected a " + what_ + " (" + joined_names() + "), got '" + name + "'");
  }
  std::vector<std::string> names() const {
    std::vector<std::string> out;
    for (const Entry& e : entries_) out.push_back(e.name);
    return out;
  }
  std::string joined_names() const {
    std::string out;
    for (const Entry& e : entries_) out += (out.empty() ? "" : ", ") + e.name;
    return out;
  }

 private:
  struct Entry {
    std::string name;
    Factory factory;
    std::string description;
  };
  const Entry* find(const std::string& name) const {
    for (const Entry& e : entries_)
      if (e.name == name) return &e;
    return nullptr;
  }
  std::string what_;
  std::vector<Entry> entries_;
};

// Registers eomlab's own methods, flows and observables (flow/registrations.cpp); called once by the
// registries' accessors.
void register_builtins();

}  // namespace eomlab
