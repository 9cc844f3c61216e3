// Plan serialisation. YAML goes through protobuf's JSON mapping: JSON -> nlohmann::json -> yaml-cpp on the
// way out, the reverse on the way in (quoted YAML scalars stay strings, plain ones become numbers/bools).
#include "sharding/plan_io.h"

#include <google/protobuf/io/tokenizer.h>
#include <google/protobuf/text_format.h>
#include <google/protobuf/util/json_util.h>
#include <yaml-cpp/yaml.h>

#include <charconv>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "kernels/error.h"

namespace moerig::sharding {
namespace {

bool ends_with(const std::string& s, std::string_view suffix) {
    return s.size() >= suffix.size() && s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

void emit_yaml(YAML::Emitter& out, const nlohmann::json& j) {
    if (j.is_object()) {
        out << YAML::BeginMap;
        for (auto it = j.begin(); it != j.end(); ++it) {
            out << YAML::Key << it.key() << YAML::Value;
            emit_yaml(out, it.value());
        }
        out << YAML::EndMap;
    } else if (j.is_array()) {
        // Short arrays of scalars read best on one line.
        const bool flow = j.size() <= 16 && std::all_of(j.begin(), j.end(), [](auto& v) { return v.is_primitive(); });
        out << (flow ? YAML::Flow : YAML::Block) << YAML::BeginSeq;
        for (const auto& v : j) emit_yaml(out, v);
        out << YAML::EndSeq;
    } else if (j.is_string()) {
        out << YAML::DoubleQuoted << j.get<std::string>();
    } else if (j.is_boolean()) {
        out << (j.get<bool>() ? "true" : "false");
    } else if (j.is_number_integer() || j.is_number_unsigned()) {
        out << j.dump();
    } else if (j.is_number_float()) {
        out << fmt::format("{}", j.get<double>());
    } else {
        out << YAML::Null;
    }
}

nlohmann::json yaml_to_json(const YAML::Node& node, const std::string& source) {
    switch (node.Type()) {
        case YAML::NodeType::Map: {
            nlohmann::json j = nlohmann::json::object();
            for (const auto& kv : node) j[kv.first.as<std::string>()] = yaml_to_json(kv.second, source);
            return j;
        }
        case YAML::NodeType::Sequence: {
            nlohmann::json j = nlohmann::json::array();
            for (const auto& v : node) j.push_back(yaml_to_json(v, source));
            return j;
        }
        case YAML::NodeType::Scalar: {
            const std::string s = node.Scalar();
            if (node.Tag() == "!") return s;  // quoted
            if (s == "true" || s == "false") return s == "true";
            int64_t i = 0;
            auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), i);
            if (ec == std::errc() && p == s.data() + s.size()) return i;
            double d = 0;
            auto [pd, ecd] = std::from_chars(s.data(), s.data() + s.size(), d);
            if (ecd == std::errc() && pd == s.data() + s.size()) return d;
            return s;
        }
        default:
            return nullptr;
    }
}

class TextErrors : public google::protobuf::io::ErrorCollector {
  public:
    void AddError(int line, int column, const std::string& message) override {
        if (first_.empty()) first_ = fmt::format("line {}:{}: {}", line + 1, column + 1, message);
    }
    const std::string& first() const { return first_; }

  private:
    std::string first_;
};

}  // namespace

PlanFormat plan_format_from_path(const std::string& path) {
    if (ends_with(path, ".pb")) return PlanFormat::kBinary;
    if (ends_with(path, ".txtpb") || ends_with(path, ".textproto") || ends_with(path, ".pbtxt"))
        return PlanFormat::kText;
    if (ends_with(path, ".yaml") || ends_with(path, ".yml")) return PlanFormat::kYaml;
    if (ends_with(path, ".json")) return PlanFormat::kJson;
    MOERIG_THROW(ConfigError, "{}: unknown plan file extension (expected .pb, .txtpb, .yaml or .json)", path);
}

std::string plan_to_string(const proto::Plan& plan, PlanFormat format) {
    std::string out;
    switch (format) {
        case PlanFormat::kBinary:
            MOERIG_CHECK(plan.SerializeToString(&out), Error, "cannot serialise the plan");
            return out;
        case PlanFormat::kText:
            google::protobuf::TextFormat::PrintToString(plan, &out);
            return out;
        case PlanFormat::kJson:
        case PlanFormat::kYaml: {
            google::protobuf::util::JsonPrintOptions options;
            options.preserve_proto_field_names = true;
            options.add_whitespace = format == PlanFormat::kJson;
            const auto status = google::protobuf::util::MessageToJsonString(plan, &out, options);
            MOERIG_CHECK(status.ok(), Error, "cannot convert the plan to JSON: {}", status.ToString());
            if (format == PlanFormat::kJson) return out;
            YAML::Emitter emitter;
            emit_yaml(emitter, nlohmann::json::parse(out));
            return std::string(emitter.c_str()) + "\n";
        }
    }
    return out;
}

proto::Plan plan_from_string(const std::string& data, PlanFormat format, const std::string& source) {
    proto::Plan plan;
    switch (format) {
        case PlanFormat::kBinary:
            MOERIG_CHECK(plan.ParseFromString(data), FormatError, "{}: not a binary moerig plan", source);
            break;
        case PlanFormat::kText: {
            google::protobuf::TextFormat::Parser parser;
            TextErrors errors;
            parser.RecordErrorsTo(&errors);
            MOERIG_CHECK(parser.ParseFromString(data, &plan), FormatError, "{}: {}", source, errors.first());
            break;
        }
        case PlanFormat::kJson:
        case PlanFormat::kYaml: {
            std::string json = data;
            if (format == PlanFormat::kYaml) {
                YAML::Node root;
                try {
                    root = YAML::Load(data);
                } catch (const YAML::Exception& e) {
                    MOERIG_THROW(FormatError, "{}:{}:{}: {}", source, e.mark.line + 1, e.mark.column + 1, e.msg);
                }
                json = yaml_to_json(root, source).dump();
            }
            const auto status = google::protobuf::util::JsonStringToMessage(json, &plan);
            MOERIG_CHECK(status.ok(), FormatError, "{}: not a moerig plan: {}", source, status.ToString());
            break;
        }
    }
    MOERIG_CHECK(plan.format_version() >= 1, FormatError, "{}: plan has no format_version (not a moerig plan?)",
                 source);
    return plan;
}

void write_plan(const proto::Plan& plan, const std::string& path) {
    const std::string data = plan_to_string(plan, plan_format_from_path(path));
    std::ofstream out(path, std::ios::binary);
    MOERIG_CHECK(out.good(), ConfigError, "{}: cannot open for writing", path);
    out << data;
    MOERIG_CHECK(out.good(), ConfigError, "{}: write failed", path);
}

proto::Plan read_plan(const std::string& path) {
    const PlanFormat format = plan_format_from_path(path);
    std::ifstream in(path, std::ios::binary);
    MOERIG_CHECK(in.good(), ConfigError, "{}: cannot open plan file", path);
    std::stringstream buf;
    buf << in.rdbuf();
    return plan_from_string(buf.str(), format, path);
}

}  // namespace moerig::sharding
