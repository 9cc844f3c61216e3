// A read-only memory mapping of a whole file, owned RAII-style: model readers (GGUF, safetensors) parse
// the header in place and hand out tensor data as pointers into it.
#pragma once

#include <cstdint>
#include <filesystem>
#include <string>

namespace moerig::formats {

class MappedFile {
  public:
    MappedFile() = default;
    /// Maps path read-only; throws FormatError naming the file when it cannot be opened or mapped.
    explicit MappedFile(const std::filesystem::path& path);
    ~MappedFile();
    MappedFile(MappedFile&& other) noexcept;
    MappedFile& operator=(MappedFile&& other) noexcept;
    MappedFile(const MappedFile&) = delete;
    MappedFile& operator=(const MappedFile&) = delete;

    const uint8_t* data() const { return data_; }
    uint64_t size() const { return size_; }

  private:
    void reset();

    const uint8_t* data_ = nullptr;
    uint64_t size_ = 0;
};

}  // namespace moerig::formats
