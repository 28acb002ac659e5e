// The Storage contract, checked on the in-memory spool.
#include <doctest/doctest.h>

#include "storage/storage.hpp"
#include "storage_contract.hpp"

namespace fluxrelay {

struct MemoryStorageFixture {
    explicit MemoryStorageFixture(std::size_t maxQueuedDeliveries) : storage(makeMemoryStorage(maxQueuedDeliveries)) {}
    std::unique_ptr<Storage> storage;
};

}  // namespace fluxrelay

TYPE_TO_STRING(fluxrelay::MemoryStorageFixture);

namespace fluxrelay {

FLUXRELAY_STORAGE_CONTRACT(MemoryStorageFixture);

}  // namespace fluxrelay
