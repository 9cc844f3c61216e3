// mmap/munmap of model files, and the images readers parse. An empty file maps to (nullptr, 0) so that parsers
// report it as truncated.
#include "formats/mapped_file.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <utility>

#include "kernels/error.h"

namespace moerig::formats {

MappedFile::MappedFile(const std::filesystem::path& path) {
    const std::string name = path.string();
    const int fd = ::open(name.c_str(), O_RDONLY | O_CLOEXEC);
    MOERIG_CHECK(fd >= 0, FormatError, "{}: cannot open: {}", name, std::strerror(errno));
    struct stat st {};
    if (::fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        ::close(fd);
        MOERIG_THROW(FormatError, "{}: not a regular file", name);
    }
    const uint64_t size = static_cast<uint64_t>(st.st_size);
    if (size > 0) {
        void* p = ::mmap(nullptr, size, PROT_READ, MAP_PRIVATE, fd, 0);
        const int err = errno;
        ::close(fd);
        MOERIG_CHECK(p != MAP_FAILED, FormatError, "{}: mmap failed: {}", name, std::strerror(err));
        data_ = static_cast<const uint8_t*>(p);
        size_ = size;
    } else {
        ::close(fd);
    }
}

MappedFile::~MappedFile() {
    reset();
}

MappedFile::MappedFile(MappedFile&& other) noexcept
    : data_(std::exchange(other.data_, nullptr)), size_(std::exchange(other.size_, 0)) {}

MappedFile& MappedFile::operator=(MappedFile&& other) noexcept {
    if (this != &other) {
        reset();
        data_ = std::exchange(other.data_, nullptr);
        size_ = std::exchange(other.size_, 0);
    }
    return *this;
}

void MappedFile::reset() {
    if (data_) ::munmap(const_cast<uint8_t*>(data_), size_);
    data_ = nullptr;
    size_ = 0;
}

FileImage::FileImage(const std::filesystem::path& path) : path_(path.string()), map_(path) {
    bytes_ = map_.data();
    size_ = map_.size();
}

FileImage::FileImage(const uint8_t* bytes, size_t size, std::string name)
    : path_(std::move(name)), bytes_(bytes), size_(size) {}

}  // namespace moerig::formats
