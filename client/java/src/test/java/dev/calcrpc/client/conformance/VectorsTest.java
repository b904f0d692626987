package dev.calcrpc.client.conformance;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import com.google.gson.JsonElement;
import com.google.gson.JsonObject;
import com.google.gson.JsonParser;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import org.junit.jupiter.api.Test;

/** Every wire vector decodes as the file says (the runner does the same; this runs without calcd). */
class VectorsTest {
  @Test
  void allVectorsPass() throws Exception {
    JsonObject file = JsonParser.parseString(Files.readString(Path.of("../../testdata/wire/vectors.json"))).getAsJsonObject();
    List<String> failures = new ArrayList<>();
    int n = 0;
    for (JsonElement e : file.getAsJsonArray("vectors")) {
      n++;
      String why = VectorChecker.check(e.getAsJsonObject());
      if (why != null) {
        failures.add(e.getAsJsonObject().get("name").getAsString() + ": " + why);
      }
    }
    assertTrue(n >= 20, "only " + n + " vectors");
    assertEquals(List.of(), failures);
  }

  @Test
  void checkerCatchesAWrongExpectation() {
    JsonObject v = JsonParser.parseString("""
        {"name": "calculate_response", "hex": "000000080500000000030805",
         "frames": [{"kind": "RESPONSE", "flags": 0, "id": 3, "message_type": "calculator.v1.CalculateResponse",
                     "message": {"result": "6"}}]}""").getAsJsonObject();
    String why = VectorChecker.check(v);
    assertTrue(why != null && why.contains("want"), String.valueOf(why));
  }
}
