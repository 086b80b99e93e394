# buildimage's drop-in for nixpkgs' dockerTools: the same functions, the same arguments,
# the same results, built by `buildimage nix-build` instead of a virtual machine, fakeroot
# and a shell pipeline.
#
#   let tools = import ./nix { buildimage = <a package or store path with bin/buildimage>; };
#   in tools.buildLayeredImage { name = "hello"; contents = [ hello ]; config.Cmd = [ "hello" ]; }
#
# Only builtins are used: no nixpkgs, no stdenv. Each derivation has `buildimage` itself
# as its builder and structured attributes (`__structuredAttrs`): the function's arguments
# go to the builder as the attribute `spec` (derivations become their store paths, with
# their context, so Nix builds them first), and `exportReferencesGraph` exports the
# closure of every store path in them (NAR hash, size, references), so the builder needs
# no Nix database. Arguments are checked by the builder with the command line's own
# parser: an unknown argument, a value of the wrong type or `maxLayers = 1` fails the
# build with the message `buildimage` gives for the same JSON spec.
{ buildimage, system ? builtins.currentSystem }:

let
  builder = "${buildimage}/bin/buildimage";

  # Every store path named in `text` (a string with context), each once.
  storePathsIn = text:
    let
      found = builtins.filter builtins.isList
        (builtins.split "(${builtins.storeDir}/[0-9a-z]{32}-[-+._?=0-9a-zA-Z]+)" text);
      unique = builtins.listToAttrs (map (m: { name = builtins.head m; value = null; }) found);
    in
    builtins.attrNames unique;

  # What nixpkgs names an image file after: the part of `name` after its last `/`.
  # The builder would say the same of a missing or bad name, but the derivation's own name
  # needs it first.
  baseName = args:
    let name = args.name or (throw "Missing required key `name`"); in
    if builtins.isString name && name != "" then baseNameOf name
    else throw "Key `name`: expected a non-empty string, got ${builtins.toJSON name}";

  compressorExtension = args:
    let compressor = args.compressor or "gz"; in
    if compressor == "gz" then ".gz"
    else if compressor == "zstd" then ".zst"
    else ""; # "none"; anything else is refused by the builder, naming the key

  # The hash part of a store path: the tag nixpkgs gives an image whose `tag` is null.
  hashPart = path: builtins.substring 0 32 (baseNameOf (builtins.unsafeDiscardStringContext path));

  # One derivation built by `buildimage nix-build FUNCTION`. `args` are the dockerTools
  # arguments; `passthru` and `meta` stay here (functions cannot reach a builder).
  imageDerivation = { function, drvName, outputs, args, tagOutput ? "out" }:
    let
      spec = builtins.removeAttrs args [ "passthru" "meta" ];
      drv = builtins.derivation {
        name = drvName;
        inherit system builder outputs spec;
        args = [ "nix-build" function ];
        __structuredAttrs = true;
        exportReferencesGraph.closure = storePathsIn (builtins.toJSON spec);
      };
      tag = args.tag or null;
    in
    drv // (args.passthru or { }) // {
      imageName = args.name;
      imageTag = if tag == null then hashPart drv.${tagOutput}.outPath else tag;
      meta = args.meta or { };
    };

  buildImage = args:
    let
      image = imageDerivation {
        function = "build";
        drvName = "docker-image-${baseName args}.tar${compressorExtension args}";
        outputs = [ "out" "layer" ];
        inherit args;
      };
    in
    image // { buildArgs = args; };

  buildLayeredImage = args:
    imageDerivation {
      function = "build-layered";
      drvName = "${baseName args}.tar${compressorExtension args}";
      outputs = [ "out" ];
      inherit args;
    };

  streamLayeredImage = args:
    let
      stream = imageDerivation {
        function = "stream-layered";
        drvName = "stream-${baseName args}";
        outputs = [ "out" "conf" ];
        # The stream refers to its conf, so the tag comes from there, as in dockerTools.
        tagOutput = "conf";
        inherit args;
      };
    in
    stream // { isExe = true; };
in
{
  inherit buildImage buildLayeredImage streamLayeredImage;

  buildImageWithNixDb = args: buildImage (args // { includeNixDB = true; });

  buildLayeredImageWithNixDb = args: buildLayeredImage (args // { includeNixDB = true; });
}
