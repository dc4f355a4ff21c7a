/*
 * Reads our topics' schemas and records as a Java consumer does (Kafka Connect, ksqlDB, Flink,
 * Spark, Confluent's KafkaAvroDeserializer all use org.apache.avro): one JVM for a whole test.
 * Run with the source launcher, no build step:
 *   java -cp '<avro libs>/*' test/java/AvroDecode.java < lines
 * Input, one per line, fields separated by a tab:
 *   S <id> <base64 schema JSON>        parse a writer schema (defaults validated, strict names)
 *   R <tag> <schema id> <base64 Avro>  decode a record's bytes after the 5-byte Confluent header
 * Output, one JSON object per input line, in order:
 *   {"schema":<id>,"ok":true} or {"schema":<id>,"error":"..."}
 *   {"tag":"...","value":<datum>}   or {"tag":"...","error":"..."}
 * Values JSON cannot carry exactly are tagged: {"$long":"<decimal>"}, {"$bytes":"<base64>"},
 * {"$fixed":"<base64>"}, {"$double":"NaN"|"Infinity"|"-Infinity"}, and the logical types'
 * Java objects as {"$decimal"|"$date"|"$time"|"$instant"|"$local"|"$uuid": "<toString()>"}.
 *
 * Written for Avro 1.11 (Confluent Platform 7's, so Kafka Connect's and ksqlDB's): its parser
 * checks a union field's default against the union's first branch (1.12 takes any branch), but
 * lets Unicode letters and bad namespace parts through, which 1.12's strict validator and other
 * implementations refuse: names are checked here against the specification's grammar.
 */
import java.io.BufferedReader;
import java.io.InputStreamReader;
import java.io.PrintStream;
import java.nio.ByteBuffer;
import java.nio.charset.StandardCharsets;
import java.util.Base64;
import java.util.Collection;
import java.util.HashMap;
import java.util.HashSet;
import java.util.Map;
import java.util.Set;
import java.util.regex.Pattern;
import org.apache.avro.Conversions;
import org.apache.avro.Schema;
import org.apache.avro.data.TimeConversions;
import org.apache.avro.generic.GenericData;
import org.apache.avro.generic.GenericDatumReader;
import org.apache.avro.generic.GenericFixed;
import org.apache.avro.generic.GenericRecord;
import org.apache.avro.io.BinaryDecoder;
import org.apache.avro.io.DecoderFactory;

public class AvroDecode {
  public static void main(String[] args) throws Exception {
    GenericData data = new GenericData();
    data.addLogicalTypeConversion(new Conversions.DecimalConversion());
    data.addLogicalTypeConversion(new Conversions.UUIDConversion());
    data.addLogicalTypeConversion(new TimeConversions.DateConversion());
    data.addLogicalTypeConversion(new TimeConversions.TimeMillisConversion());
    data.addLogicalTypeConversion(new TimeConversions.TimeMicrosConversion());
    data.addLogicalTypeConversion(new TimeConversions.TimestampMillisConversion());
    data.addLogicalTypeConversion(new TimeConversions.TimestampMicrosConversion());
    data.addLogicalTypeConversion(new TimeConversions.LocalTimestampMillisConversion());
    data.addLogicalTypeConversion(new TimeConversions.LocalTimestampMicrosConversion());
    Map<String, GenericDatumReader<Object>> readers = new HashMap<>();
    BufferedReader in = new BufferedReader(new InputStreamReader(System.in, StandardCharsets.UTF_8));
    PrintStream out = new PrintStream(System.out, false, StandardCharsets.UTF_8);
    Base64.Decoder b64 = Base64.getDecoder();
    BinaryDecoder decoder = null;
    for (String line; (line = in.readLine()) != null; ) {
      if (line.isEmpty()) continue;
      String[] f = line.split("\t", -1);
      StringBuilder sb = new StringBuilder();
      if (f[0].equals("S")) {
        sb.append("{\"schema\":").append(str(f[1]));
        try {
          // A parser per schema: each registered schema stands alone (its names are its own).
          Schema.Parser parser = new Schema.Parser();
          parser.setValidate(true);
          parser.setValidateDefaults(true);
          Schema schema = parser.parse(new String(b64.decode(f[2]), StandardCharsets.UTF_8));
          checkNames(schema, new HashSet<>());
          readers.put(f[1], new GenericDatumReader<>(schema, schema, data));
          sb.append(",\"ok\":true}");
        } catch (Exception e) {
          sb.append(",\"error\":").append(str(e.toString())).append('}');
        }
      } else {
        sb.append("{\"tag\":").append(str(f[1]));
        try {
          GenericDatumReader<Object> reader = readers.get(f[2]);
          if (reader == null) throw new IllegalStateException("schema " + f[2] + " did not parse");
          byte[] bytes = b64.decode(f[3]);
          decoder = DecoderFactory.get().binaryDecoder(bytes, decoder);
          Object datum = reader.read(null, decoder);
          if (!decoder.isEnd()) throw new IllegalStateException("bytes left after the datum");
          StringBuilder v = new StringBuilder();
          json(datum, v);
          sb.append(",\"value\":").append(v).append('}');
        } catch (Exception e) {
          sb.append(",\"error\":").append(str(e.toString())).append('}');
        }
      }
      out.println(sb);
    }
    out.flush();
  }

  /** The specification's names: [A-Za-z_][A-Za-z0-9_]*, for names, namespace parts, fields, symbols. */
  static final Pattern NAME = Pattern.compile("[A-Za-z_][A-Za-z0-9_]*");

  static void checkName(String what, String name) {
    if (!NAME.matcher(name).matches()) throw new IllegalArgumentException(what + " \"" + name + "\" is not an Avro name ([A-Za-z_][A-Za-z0-9_]*)");
  }

  static void checkNames(Schema s, Set<String> seen) {
    switch (s.getType()) {
      case RECORD:
      case ENUM:
      case FIXED:
        if (!seen.add(s.getFullName())) return;
        checkName("name", s.getName());
        if (s.getNamespace() != null && !s.getNamespace().isEmpty()) {
          for (String part : s.getNamespace().split("\\.", -1)) checkName("namespace part of " + s.getFullName(), part);
        }
        if (s.getType() == Schema.Type.RECORD) {
          for (Schema.Field field : s.getFields()) {
            checkName("field of " + s.getFullName(), field.name());
            checkNames(field.schema(), seen);
          }
        }
        if (s.getType() == Schema.Type.ENUM) for (String symbol : s.getEnumSymbols()) checkName("symbol of " + s.getFullName(), symbol);
        return;
      case ARRAY:
        checkNames(s.getElementType(), seen);
        return;
      case MAP:
        checkNames(s.getValueType(), seen);
        return;
      case UNION:
        for (Schema branch : s.getTypes()) checkNames(branch, seen);
        return;
      default:
    }
  }

  static void json(Object v, StringBuilder sb) {
    if (v == null) sb.append("null");
    else if (v instanceof Boolean || v instanceof Integer) sb.append(v);
    else if (v instanceof Long) tagged("$long", v.toString(), sb);
    else if (v instanceof Float) dbl(((Float) v).doubleValue(), sb); // exact: every float is a double
    else if (v instanceof Double) dbl((Double) v, sb);
    else if (v instanceof CharSequence) sb.append(str(v.toString()));
    else if (v instanceof ByteBuffer) {
      ByteBuffer b = ((ByteBuffer) v).duplicate();
      byte[] a = new byte[b.remaining()];
      b.get(a);
      tagged("$bytes", Base64.getEncoder().encodeToString(a), sb);
    } else if (v instanceof GenericFixed) tagged("$fixed", Base64.getEncoder().encodeToString(((GenericFixed) v).bytes()), sb);
    else if (v instanceof GenericData.EnumSymbol) sb.append(str(v.toString()));
    else if (v instanceof GenericRecord) {
      GenericRecord r = (GenericRecord) v;
      sb.append('{');
      boolean first = true;
      for (Schema.Field field : r.getSchema().getFields()) {
        if (!first) sb.append(',');
        first = false;
        sb.append(str(field.name())).append(':');
        json(r.get(field.pos()), sb);
      }
      sb.append('}');
    } else if (v instanceof Collection) {
      sb.append('[');
      boolean first = true;
      for (Object x : (Collection<?>) v) {
        if (!first) sb.append(',');
        first = false;
        json(x, sb);
      }
      sb.append(']');
    } else if (v instanceof Map) {
      sb.append('{');
      boolean first = true;
      for (Map.Entry<?, ?> e : ((Map<?, ?>) v).entrySet()) {
        if (!first) sb.append(',');
        first = false;
        sb.append(str(e.getKey().toString())).append(':');
        json(e.getValue(), sb);
      }
      sb.append('}');
    } else if (v instanceof java.math.BigDecimal) tagged("$decimal", ((java.math.BigDecimal) v).toPlainString(), sb);
    else if (v instanceof java.time.LocalDate) tagged("$date", v.toString(), sb);
    else if (v instanceof java.time.LocalTime) tagged("$time", v.toString(), sb);
    else if (v instanceof java.time.Instant) tagged("$instant", v.toString(), sb);
    else if (v instanceof java.time.LocalDateTime) tagged("$local", v.toString(), sb);
    else if (v instanceof java.util.UUID) tagged("$uuid", v.toString(), sb);
    else throw new IllegalStateException("no JSON form for " + v.getClass().getName());
  }

  static void dbl(double d, StringBuilder sb) {
    if (Double.isNaN(d) || Double.isInfinite(d)) tagged("$double", Double.toString(d), sb);
    else sb.append(Double.toString(d)); // shortest round-trip digits; -0.0 kept
  }

  static void tagged(String tag, String text, StringBuilder sb) {
    sb.append("{\"").append(tag).append("\":").append(str(text)).append('}');
  }

  static String str(String s) {
    StringBuilder sb = new StringBuilder(s.length() + 2).append('"');
    for (int i = 0; i < s.length(); i++) {
      char c = s.charAt(i);
      if (c == '"' || c == '\\') sb.append('\\').append(c);
      else if (c < 0x20) sb.append(String.format("\\u%04x", (int) c));
      else sb.append(c); // surrogate pairs pass through as UTF-16, printed as UTF-8
    }
    return sb.append('"').toString();
  }
}
