// A read-only memory mapping of a whole file, owned RAII-style, and the image a model reader (GGUF,
// safetensors) parses: a mapped file or bytes in memory. Readers parse the header in place and hand out
// tensor data as pointers into it.
#pragma once

#include <cstddef>
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

/// The bytes of one model file as its reader parses them, with the name its messages use: either the file
/// mapped from disk or an in-memory image (fuzzing, tests). Readers derive from it and parse in their
/// constructors.
class FileImage {
  public:
    /// Maps path; throws FormatError naming the file when it cannot be opened or mapped.
    explicit FileImage(const std::filesystem::path& path);
    /// An in-memory image; name is used in messages. The bytes must outlive this.
    FileImage(const uint8_t* bytes, size_t size, std::string name);
    FileImage(const FileImage&) = delete;
    FileImage& operator=(const FileImage&) = delete;

    const std::string& path() const { return path_; }
    uint64_t file_size() const { return size_; }

  protected:
    std::string path_;
    const uint8_t* bytes_ = nullptr;
    uint64_t size_ = 0;

  private:
    MappedFile map_;  // empty for in-memory images
};

}  // namespace moerig::formats
